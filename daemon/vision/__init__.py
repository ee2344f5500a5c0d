"""Images in chat requests: decoding, checking and downscaling to the pixel budget."""
