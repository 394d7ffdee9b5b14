"""The pytorchvideo adapter."""
