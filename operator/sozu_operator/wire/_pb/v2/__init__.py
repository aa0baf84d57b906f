"""Generated code for the command protocol of Sōzu 2.1.0 (sozu.v2)."""
