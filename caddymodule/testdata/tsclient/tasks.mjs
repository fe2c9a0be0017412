// A stateless MCP server built with the official TypeScript SDK that runs
// a tool as a task (MCP 2025-11-25 tasks), for caddymodule/tasks_test.go:
// node tasks.mjs <port>. Its tasks live in one store shared by every
// request, as a stateless server's do: a task's id reaches its result
// whoever asks. Tool "report" (read-only, run as a task) completes with
// "report on <who>". It prints "listening" once it accepts connections.
import http from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { InMemoryTaskStore, InMemoryTaskMessageQueue } from "@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js";
import { z } from "zod";

const port = Number(process.argv[2]);
const store = new InMemoryTaskStore();

function newServer() {
  const server = new McpServer(
    { name: "ts-tasks", version: "1" },
    {
      capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
      taskStore: store,
      taskMessageQueue: new InMemoryTaskMessageQueue(),
    },
  );
  server.experimental.tasks.registerToolTask(
    "report",
    { inputSchema: { who: z.string() }, annotations: { readOnlyHint: true } },
    {
      async createTask({ who }, { taskStore, taskRequestedTtl }) {
        const task = await taskStore.createTask({ ttl: taskRequestedTtl ?? 60000 });
        setTimeout(() => store.storeTaskResult(task.taskId, "completed", { content: [{ type: "text", text: `report on ${who}` }] }), 50);
        return { task };
      },
      async getTask(_args, { taskId, taskStore }) {
        return await taskStore.getTask(taskId);
      },
      async getTaskResult(_args, { taskId, taskStore }) {
        return await taskStore.getTaskResult(taskId);
      },
    },
  );
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  if (req.method !== "POST") {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const server = newServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
});
httpServer.listen(port, "127.0.0.1", () => console.log("listening"));
