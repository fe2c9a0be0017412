// Has the official MCP TypeScript SDK's client confirm a call the gateway
// asks its user about, for caddymodule/confirm_test.go:
// node confirm.mjs <url> <accept|decline|cancel>. It declares form
// elicitation, answers every elicitation with the action given, calls
// create_issue, and prints one JSON object with the call's text, whether
// it was an error, and the questions it was asked.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, action] = process.argv.slice(2);
const asked = [];
const client = new Client({ name: "ts-confirm", version: "1" }, { capabilities: { elicitation: { form: {} } } });
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params.message);
  return action === "accept" ? { action, content: {} } : { action };
});

const out = { asked };
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  const result = await client.callTool({ name: "create_issue", arguments: { text: "from typescript" } });
  out.text = result.content.map((content) => content.text ?? "").join("");
  out.isError = result.isError === true;
} catch (error) {
  out.error = String(error);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(out) + "\n");
