// A FLEET-Q worker in Node.js using nothing but fetch against the REST routes: it long-polls
// POST /workers/claim, doubles each step's args.n, and completes each step with
// POST /steps/{id}:complete (its attempt fences the write). It exits after COUNT outcomes.
const base = process.env.FLEETQ_URL;
const count = Number(process.env.COUNT);
let done = 0;

async function post(path, body) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

while (done < count) {
  const { steps } = await post("/workers/claim", {
    worker_id: "node-worker",
    types: ["node_job"],
    max_steps: 10,
    wait_seconds: 5,
    lease_seconds: 30,
  });
  for (const step of steps) {
    await post(`/steps/${step.step_id}:heartbeat`, { attempt: step.attempt, lease_seconds: 60 });
    const result = { doubled: step.args.n * 2, attempt: step.attempt };
    await post(`/steps/${step.step_id}:complete`, { attempt: step.attempt, result });
    done += 1;
  }
}
console.log(JSON.stringify({ done }));
