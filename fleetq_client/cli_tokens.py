"""Where a client command's --token defaults from, shared by cli.py and the admin command
groups (cli_groups.py): the admin commands prefer the admin token, the others the API token,
`fleetq work` the worker token; each falls back to the others (the admin token also opens
every other RPC)."""

ADMIN_TOKEN_ENV = "FLEETQ_ADMIN_TOKEN"
API_TOKEN_ENV = "FLEETQ_API_TOKEN"
WORKER_TOKEN_ENV = "FLEETQ_WORKER_TOKEN"

ADMIN_TOKEN_ENVS = (ADMIN_TOKEN_ENV, API_TOKEN_ENV)
API_TOKEN_ENVS = (API_TOKEN_ENV, ADMIN_TOKEN_ENV)
WORKER_TOKEN_ENVS = (WORKER_TOKEN_ENV, API_TOKEN_ENV, ADMIN_TOKEN_ENV)
