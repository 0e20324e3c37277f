"""Black-box tests: real server processes driven by real clients (httpx, gRPC stubs)."""
