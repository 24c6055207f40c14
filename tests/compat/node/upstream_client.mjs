// Calls POST /evaluate the way upstream's @cshield/client does: global fetch, a
// {context} body, the decision read from `.decision`. Prints one JSON line per context.
const [url, file] = process.argv.slice(2);
const { readFile } = await import("node:fs/promises");
const contexts = JSON.parse(await readFile(file, "utf8"));
for (const context of contexts) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 5000);
  const response = await fetch(`${url}/evaluate`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ context }),
    signal: controller.signal,
  });
  clearTimeout(timer);
  if (!response.ok) throw new Error(`ContractShield returned ${response.status}`);
  const data = await response.json();
  const health = await (await fetch(`${url}/health`)).json();
  console.log(JSON.stringify({ decision: data.decision, durationMs: data.durationMs, health: health.status }));
}
