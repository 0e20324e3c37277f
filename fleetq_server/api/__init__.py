"""API layers: the gRPC servicer and the error mapping shared by gRPC and the REST gateway."""
