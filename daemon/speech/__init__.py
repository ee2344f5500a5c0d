"""Speech to text: finding Whisper models, decoding audio, and the transcription worker process."""
