// Local Firestore emulator for oddsbatch: @firestore-emulator/server, bound to 127.0.0.1 only.
//
//   node firestore_emulator.mjs --port P [--control-port C]
//
// The package's own start() binds 0.0.0.0 (LOCAL_STACK.md), so we bind the gRPC server
// ourselves. The optional control port serves plain HTTP on 127.0.0.1:
//   GET /health -> 200 "ok";  POST /reset -> drops every document (tests use it between cases).
import http from "node:http";
import process from "node:process";
import grpc from "@grpc/grpc-js";
import { FirestoreServer } from "@firestore-emulator/server";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = "127.0.0.1";
const port = Number(arg("--port", "8080"));
const controlPort = Number(arg("--control-port", "0"));

const emulator = new FirestoreServer();
emulator.server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    console.error(JSON.stringify({ event: "firestore_bind_failed", error: String(err) }));
    process.exit(1);
  }
  console.log(JSON.stringify({ event: "firestore_listening", host, port: bound }));
});

let control = null;
if (controlPort > 0) {
  control = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/health") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok");
    } else if (req.method === "POST" && req.url === "/reset") {
      emulator.state.clear();
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("reset");
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  control.listen(controlPort, host, () => {
    console.log(JSON.stringify({ event: "firestore_control_listening", host, port: controlPort }));
  });
}

function shutdown(signal) {
  console.log(JSON.stringify({ event: "firestore_stopping", signal }));
  emulator.stop();
  if (control) control.close();
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
