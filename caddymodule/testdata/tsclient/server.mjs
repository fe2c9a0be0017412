// An MCP server built with the official TypeScript SDK, for
// caddymodule/transports_test.go: node server.mjs <port>. It serves
// Streamable HTTP on 127.0.0.1:<port> (one transport per session) and has
// one tool, "ask", which asks the client for sampling and answers with the
// reply, or with the error its createMessage got: "sampling failed:
// <message> (code <code>)"; and two resources, file:///public/readme
// ("public") and file:///secret ("TOP SECRET"), which the SDK looks up by
// new URL(uri), resolved. It prints "listening" once it accepts
// connections.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const port = Number(process.argv[2]);
const transports = new Map();

function newServer() {
  const server = new McpServer({ name: "ts-server", version: "1" });
  server.registerTool(
    "ask",
    { inputSchema: { text: z.string() }, annotations: { readOnlyHint: true } },
    async ({ text }) => {
      try {
        const reply = await server.server.createMessage({
          messages: [{ role: "user", content: { type: "text", text } }],
          maxTokens: 16,
        });
        return { content: [{ type: "text", text: `sampled:${reply.content.text}` }] };
      } catch (error) {
        return { content: [{ type: "text", text: `sampling failed: ${error.message} (code ${error.code})` }] };
      }
    },
  );
  for (const [uri, text] of [["file:///public/readme", "public"], ["file:///secret", "TOP SECRET"]]) {
    server.registerResource(uri, uri, {}, async () => ({ contents: [{ uri, text }] }));
  }
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  let body;
  if (req.method === "POST") {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  }
  const id = req.headers["mcp-session-id"];
  let transport = id ? transports.get(id) : undefined;
  if (!transport) {
    if (id) {
      res.writeHead(404).end();
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sessionId) => transports.set(sessionId, transport),
    });
    await newServer().connect(transport);
  }
  await transport.handleRequest(req, res, body);
});
httpServer.listen(port, "127.0.0.1", () => console.log("listening"));
