// Local Firestore emulator for oddsbatch: @firestore-emulator/server, bound to 127.0.0.1 only.
//
//   node firestore_emulator.mjs --port P [--control-port C]
//
// The package's own start() binds 0.0.0.0 (LOCAL_STACK.md), so we bind the gRPC server
// ourselves. The optional control port serves plain HTTP on 127.0.0.1:
//   GET /health -> 200 "ok";  POST /reset -> drops every document (tests use it between cases).
//
// One fidelity fix, applied at launch (no fork of the package): write preconditions on the
// document's last update time. The package checks `current_document.exists` but ignores
// `current_document.update_time`; real Firestore enforces it: "When set, the target document
// must exist and have been last updated at that time"
// (https://cloud.google.com/ruby/docs/reference/google-cloud-firestore-v1/latest/Google-Cloud-Firestore-V1-Precondition),
// and a conditional update/delete whose condition does not match fails with FAILED_PRECONDITION
// (https://cloud.google.com/ruby/docs/reference/google-cloud-errors/latest/Google-Cloud-FailedPreconditionError,
// case (d); real Firestore's message: "the stored version (...) does not match the required base
// version (...)", https://github.com/GoogleCloudPlatform/spring-cloud-gcp/issues/2163).
// The package keeps times in milliseconds, so two writes in one millisecond would share an
// update time and a stale precondition would pass: every write to a path gets a time strictly
// after the previous write to that path (deletes included), as real Firestore's versions do.
import http from "node:http";
import process from "node:process";
import grpc from "@grpc/grpc-js";
import { FirestoreServer, FirestoreState } from "@firestore-emulator/server";

// The package does not export its error class, and Commit maps only instances of it to a gRPC
// status: take the class from an error its own exists-check raises on a scratch state.
function emulatorErrorClass() {
  try {
    new FirestoreState().writeV1Document(new Date(), {
      has_delete: true, delete: "projects/p/databases/d/documents/c/missing",
      has_current_document: true, current_document: { has_exists: true, exists: true },
    });
  } catch (err) {
    if (typeof err.code === "number") return err.constructor;
  }
  throw new Error("could not obtain the emulator's error class: package changed?");
}
const EmulatorError = emulatorErrorClass();

function patchPreconditions() {
  const original = FirestoreState.prototype.writeV1Document;
  const lastWrite = new Map(); // document path -> ms of its last write
  FirestoreState.prototype.writeV1Document = function writeV1Document(date, write) {
    const path = write.has_delete ? write.delete : write.has_update ? write.update.name : null;
    if (path === null) return original.call(this, date, write);
    const pre = write.has_current_document ? write.current_document : null;
    if (pre && pre.has_update_time) {
      const document = this.getDocument(path);
      const wanted = Number(pre.update_time.seconds) * 1e3 + Number(pre.update_time.nanos) / 1e6;
      const stored = document.metadata.hasExist ? document.metadata.updatedAt.getTime() : null;
      if (stored === null) {
        throw new EmulatorError(grpc.status.FAILED_PRECONDITION,
          `no document to update with an update_time precondition: ${path}`);
      }
      if (stored !== wanted) {
        throw new EmulatorError(grpc.status.FAILED_PRECONDITION,
          `the stored version (${stored * 1e3}) does not match the required base version (${wanted * 1e3})`);
      }
    }
    const previous = lastWrite.get(path);
    const at = previous !== undefined && date.getTime() <= previous ? new Date(previous + 1) : date;
    const result = original.call(this, at, write);
    lastWrite.set(path, at.getTime());
    return result;
  };
}
patchPreconditions();

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
