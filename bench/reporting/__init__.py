"""Report benchmarks: PDF layout with key images, sign-to-clinic delivery."""
