"""The SCDF fallback: the same pipeline as an SCDF stream (render, REST client, deploy plan)."""
