"""Generated code for the command protocol of Sōzu 1.0.0 (sozu.v1)."""
