"""Infrastructure shared by the four methods: CLI errors, DDP, checkpoints, logging, frame/video loading,
clip-consistent transform primitives, samplers and metrics. No paper maths lives here."""
