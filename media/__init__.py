"""styleaxis.media: reading and writing pixels (video key frames, still images, test videos)."""
