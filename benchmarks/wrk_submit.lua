-- wrk script for the REST single-submit benchmark (benchmarks/clients.py runs it):
-- every request POSTs one small step, the body given in WRK_BODY.
wrk.method = "POST"
wrk.path = "/submit"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
