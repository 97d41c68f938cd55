#!/usr/bin/env node
// A Z-Wave mock controller with simulated locks, served on loopback for zwave-server.
//
// Why our own launcher instead of zwave-js's `mock-server` binary:
// - the stock server hands raw TCP chunks to the mock controller, which expects exactly one
//   serial frame per chunk; an ACK and the next request in one segment crash it ("does not start
//   with SOF"). We split the byte stream into frames first.
// - the stock server always advertises itself with mDNS multicast on every interface; here the
//   mDNS library is replaced by a no-op before anything can load it, and we bind to 127.0.0.1.
// - tests need to act "at the lock" (type a code at the keypad, unlock with a code); a small
//   JSON-lines control channel on loopback does that.
//
// Usage: node mock-server.cjs --nodes FILE.json [--port P] [--control-port C] [--ready-file F]
// (ports default to free ones; the bound ports are printed, and written to F, as JSON)
// FILE.json: [{"id": 2, "slots": 10, "schedules": false, "supervision": false}, ...]
// (`supervision`: the lock has the Supervision CC, so zwave-js supervises its Sets and a refusal
// is answered Fail, as Schlage and newer Yale locks do; with `duplicate_success` a supervised
// duplicate is answered Success instead and the notice follows `duplicate_notice_ms` later; `checksum: false`: no User Code
// checksum; `multi_report`: the lock answers User Code v2's Extended User Code Get with several
// codes a frame (Report More); `report_bytes`: the payload such a report may fill, 46 by
// default; `tx_delay_ms`: how long each frame to or from the node takes on the air, 10 by
// default as in zwave-js's mock: a realistic per-command latency for benchmarks)
"use strict";

const Module = require("node:module");
const net = require("node:net");
const path = require("node:path");
const fs = require("node:fs");

const HOST = "127.0.0.1";

// -- mDNS: replace @homebridge/ciao with a no-op before zwave-js can require it ---------------
const zwaveRequire = Module.createRequire(require.resolve("zwave-js"));
(function stubMdns() {
  const noopService = {
    advertise: async () => {},
    end: async () => {},
    destroy: async () => {},
    updateTxt: () => {},
    on: () => noopService,
  };
  const noopResponder = {
    createService: () => noopService,
    shutdown: async () => {},
  };
  const stub = { getResponder: () => noopResponder, Protocol: { TCP: "tcp", UDP: "udp" } };
  const ciaoPath = zwaveRequire.resolve("@homebridge/ciao");
  const mod = new Module(ciaoPath);
  mod.filename = ciaoPath;
  mod.loaded = true;
  mod.exports = stub;
  require.cache[ciaoPath] = mod;
})();

const { createAndOpenMockedZWaveSerialPort } = zwaveRequire("@zwave-js/serial/mock");
const { Faucet, ZWaveSerialFrameType } = zwaveRequire("@zwave-js/serial");
const testing = zwaveRequire("@zwave-js/testing");
const { CommandClasses } = zwaveRequire("@zwave-js/core");
const cc = zwaveRequire("@zwave-js/cc");
const {
  createDefaultMockControllerBehaviors,
  createDefaultMockNodeBehaviors,
} = require("zwave-js/Testing");
const { Bytes } = zwaveRequire("@zwave-js/shared");

// -- User Code v2 multi-code reads: the two halves zwave-js 15.29 leaves out on the node's side
// zwave-js (the controller) sends Extended User Code Get and parses the Report
// (packages/cc/src/cc/UserCodeCC.ts: `UserCodeCCAPI.get(userId, multiple)`,
// `UserCodeCCExtendedUserCodeReport.from`), but a mock node can neither parse the Get
// (`UserCodeCCExtendedUserCodeGet.from` throws "deserialization not implemented") nor send the
// Report (it has no `serialize`). Both are filled in here, in this process only: the
// zwave-js-server process keeps the stock classes.
(function completeExtendedUserCode() {
  cc.UserCodeCCExtendedUserCodeGet.from = function from(raw, ctx) {
    const payload = raw.payload;
    if (payload.length < 3) throw new Error("Extended User Code Get: payload too short");
    return new cc.UserCodeCCExtendedUserCodeGet({
      nodeId: ctx.sourceNodeId,
      userId: payload.readUInt16BE(0),
      reportMore: !!(payload[2] & 0x01),
    });
  };
  const superSerialize = Object.getPrototypeOf(cc.UserCodeCCExtendedUserCodeReport.prototype)
    .serialize;
  cc.UserCodeCCExtendedUserCodeReport.prototype.serialize = function serialize(ctx) {
    this.payload = Bytes.concat([
      [this.userCodes.length],
      ...this.userCodes.map(extendedEntry),
      [(this.nextUserId >> 8) & 0xff, this.nextUserId & 0xff],
    ]);
    return superSerialize.call(this, ctx);
  };
})();

/** One user code as Extended User Code Set and Report carry it: id, status, length, code. */
function extendedEntry(entry) {
  const code = Bytes.from(entry.userCode ?? "", "ascii");
  return Bytes.concat([
    [(entry.userId >> 8) & 0xff, entry.userId & 0xff, entry.userIdStatus, code.length & 0x0f],
    code,
  ]);
}

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1];
}

const PORT = parseInt(arg("--port", "0"), 10);
const CONTROL_PORT = parseInt(arg("--control-port", "0"), 10);
const NODES = JSON.parse(fs.readFileSync(path.resolve(arg("--nodes")), "utf8"));

// -- serial framing: one frame per write into the mock port ----------------------------------
const SOF = 0x01;
const SINGLE = new Set([0x06, 0x15, 0x18]); // ACK, NAK, CAN

/** Splits a byte stream into serial frames; keeps an incomplete tail for the next chunk. */
class Framer {
  constructor() {
    this.buf = Buffer.alloc(0);
  }
  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    const frames = [];
    // Each pass consumes at least one byte, so the loop ends with the buffer.
    while (this.buf.length > 0) {
      const first = this.buf[0];
      if (SINGLE.has(first)) {
        frames.push(this.buf.subarray(0, 1));
        this.buf = this.buf.subarray(1);
      } else if (first === SOF) {
        if (this.buf.length < 2) break;
        const total = this.buf[1] + 2;
        if (this.buf.length < total) break;
        frames.push(this.buf.subarray(0, total));
        this.buf = this.buf.subarray(total);
      } else {
        // Garbage between frames: drop it byte by byte, as a serial controller would.
        this.buf = this.buf.subarray(1);
      }
    }
    return frames;
  }
}

// -- mock nodes ------------------------------------------------------------------------------
const UC = "UserCode_";
const key = {
  code: (id) => `${UC}userCode_${id}`,
  status: (id) => `${UC}userIdStatus_${id}`,
};

function lockCapabilities(spec) {
  const ccs = [
    { ccId: CommandClasses["User Code"], isSupported: true, version: 2, numUsers: spec.slots,
      supportsUserCodeChecksum: spec.checksum !== false },
    { ccId: CommandClasses["Door Lock"], isSupported: true, version: 4 },
    { ccId: CommandClasses["Manufacturer Specific"], isSupported: true, version: 2 },
    { ccId: CommandClasses.Notification, isSupported: true, version: 8,
      notificationTypesAndEvents: { 0x06: [0x01, 0x02, 0x05, 0x06, 0x0c, 0x0d, 0x0e, 0x0f] } },
  ];
  if (spec.supervision) {
    ccs.push({ ccId: CommandClasses.Supervision, isSupported: true, version: 2 });
  }
  if (spec.schedules) {
    ccs.push({ ccId: CommandClasses["Schedule Entry Lock"], isSupported: true, version: 3,
               numWeekDaySlots: 0, numYearDaySlots: 1, numDailyRepeatingSlots: 0 });
    ccs.push({ ccId: CommandClasses["Time Parameters"], isSupported: true, version: 1 });
  }
  return {
    manufacturerId: 0x0090, productType: 0x0001, productId: spec.schedules ? 0x0642 : 0x0236,
    genericDeviceClass: 0x40, specificDeviceClass: 0x03,
    // The time each frame to or from this node spends on the (one, shared) air.
    txDelay: spec.tx_delay_ms ?? 10,
    commandClasses: ccs,
  };
}

/** The user codes a User Code Set carries (V1 Set or V2 Extended Set), or undefined. */
function userCodeSets(received) {
  if (received instanceof cc.UserCodeCCSet) return [received];
  if (received instanceof cc.UserCodeCCExtendedUserCodeSet) return received.userCodes;
  return undefined;
}

/** Behaviours tried before the defaults: a node that is "offline" ignores everything, and a
 *  lock rejects a code already held in another slot (as Kwikset and Yale do). A supervised
 *  refusal is answered Fail ({action: "fail"}: zwave-js's Supervision hook turns it into a
 *  Supervision Report Fail; unsupervised, nothing is sent back). */
function lockBehaviors(spec) {
  // Counts what the controller sent, so tests can prove what was (not) sent.
  const count = {
    handleCC(controller, self, received) {
      const counts = self.state.get("received") ?? {};
      const name = received.constructor.name;
      counts[name] = (counts[name] ?? 0) + 1;
      self.state.set("received", counts);
      return undefined;
    },
  };
  const offline = {
    handleCC(controller, self) {
      if (self.state.get("offline")) return { action: "stop" };
      return undefined;
    },
  };
  // Test control `mute_slot`: the lock acknowledges a User Code Get for these users but never
  // sends the report (lost every time); zwave-js waits its report timeout and the API's `get`
  // returns nothing.
  const unansweredSlots = {
    handleCC(controller, self, received) {
      const muted = self.state.get("unanswered_slots") ?? [];
      const asked = received instanceof cc.UserCodeCCGet
        || received instanceof cc.UserCodeCCExtendedUserCodeGet;
      if (asked && muted.includes(received.userId)) return { action: "stop" };
      return undefined;
    },
  };
  // Test control `fail_sets`: the next User Code Sets are answered Fail; with `keep` the lock
  // stores them all the same (a Fail is not by itself a refusal).
  const failSets = {
    handleCC(controller, self, received) {
      const sets = userCodeSets(received);
      const left = self.state.get("fail_sets") ?? 0;
      if (!sets || left <= 0) return undefined;
      self.state.set("fail_sets", left - 1);
      if (self.state.get("fail_sets_keep")) {
        for (const set of sets) {
          self.state.set(key.status(set.userId), set.userIdStatus);
          self.state.set(key.code(set.userId), set.userIdStatus === 0 ? undefined : set.userCode);
        }
      }
      return { action: "fail" };
    },
  };
  // A slot whose status is 254 ("status not available", test control `set_status`) does not
  // exist: a Set there is refused.
  const refuseMissingSlots = {
    handleCC(controller, self, received) {
      const sets = userCodeSets(received);
      if (!sets) return undefined;
      if (sets.some((set) => self.state.get(key.status(set.userId)) === 0xfe)) {
        return { action: "fail" };
      }
      return undefined;
    },
  };
  const rejectDuplicates = {
    handleCC(controller, self, received) {
      const sets = userCodeSets(received);
      if (!sets) return undefined;
      for (const set of sets) {
        const code = set.userCode;
        if (set.userIdStatus !== 1 || !code) continue;
        for (let i = 1; i <= spec.slots; i++) {
          if (i === set.userId) continue;
          if ((self.state.get(key.status(i)) ?? 0) !== 0 && self.state.get(key.code(i)) === code) {
            // The lock refuses, and says so with an Access Control notification (some Yale
            // locks without its parameters: test control `duplicate_params`).
            const params = self.state.get("duplicate_params") === false ? undefined : [set.userId];
            if (spec.supervision && spec.duplicate_success) {
              // A lock whose Supervision Report says only that it took the command: Success,
              // and the duplicate notice a moment later.
              setTimeout(() => notify(self, controller, 0x0f, params).catch(() => {}),
                         spec.duplicate_notice_ms ?? 300);
              return { action: "ok" };
            }
            void notify(self, controller, 0x0f, params);
            return { action: spec.supervision ? "fail" : "ok" };
          }
        }
      }
      return undefined;
    },
  };
  // Test control `working_sets`: the next User Code Sets are answered, under Supervision,
  // Working for 1 s (zwave-js's Supervision hook turns a duration into a Working report), and
  // stored half a second later: a read at once still shows the slot as it was.
  const workingSets = {
    handleCC(controller, self, received) {
      const sets = userCodeSets(received);
      const left = self.state.get("working_sets") ?? 0;
      if (!sets || left <= 0) return undefined;
      self.state.set("working_sets", left - 1);
      setTimeout(() => {
        for (const set of sets) {
          self.state.set(key.status(set.userId), set.userIdStatus);
          self.state.set(key.code(set.userId),
                         set.userIdStatus === 0 ? undefined : set.userCode);
        }
      }, 500);
      return { action: "ok", durationMs: 1000 };
    },
  };
  // The stock mock has no answer to Notification Get; the interview would wait for a timeout.
  const notificationStatus = {
    handleCC(controller, self, received) {
      if (!(received instanceof cc.NotificationCCGet)) return undefined;
      const report = new cc.NotificationCCReport({
        nodeId: controller.ownNodeId,
        notificationType: received.notificationType ?? 0x06,
        notificationEvent: 0x00,
      });
      return { action: "sendCC", cc: report };
    },
  };
  return [count, offline, unansweredSlots, failSets, refuseMissingSlots, rejectDuplicates,
          workingSets, notificationStatus, ...multiCodeReads(spec)];
}

/** User Code v2 multi-code reads for a lock with `multi_report` (the stock mock node says it has
 *  none, and cannot answer Extended User Code Get at all). */
function multiCodeReads(spec) {
  if (!spec.multi_report) return [];
  const capabilities = {
    handleCC(controller, self, received) {
      if (!(received instanceof cc.UserCodeCCCapabilitiesGet)) return undefined;
      const report = new cc.UserCodeCCCapabilitiesReport({
        nodeId: controller.ownNodeId,
        supportsAdminCode: false,
        supportsAdminCodeDeactivation: false,
        supportsUserCodeChecksum: spec.checksum !== false,
        supportsMultipleUserCodeReport: true,
        supportsMultipleUserCodeSet: false,
        supportedUserIDStatuses: [0, 1, 2],
        supportedKeypadModes: [0],
        supportedASCIIChars: "0123456789",
      });
      return { action: "sendCC", cc: report };
    },
  };
  const extendedGet = {
    handleCC(controller, self, received) {
      if (!(received instanceof cc.UserCodeCCExtendedUserCodeGet)) return undefined;
      const report = new cc.UserCodeCCExtendedUserCodeReport({
        nodeId: controller.ownNodeId,
        ...extendedReport(self, spec, received.userId, received.reportMore),
      });
      return { action: "sendCC", cc: report };
    },
  };
  return [capabilities, extendedGet];
}

/** What an Extended User Code Report carries for a Get of `first`: that user id, and with
 *  Report More the ids after it in order (occupied or not), as many as fit in `report_bytes`;
 *  `nextUserId` is the next occupied id after the last one reported, 0 when none is (User Code
 *  CC v2; zwave-js's own bulk read jumps to it: UserCodeCC.ts `refreshValues`). */
function extendedReport(node, spec, first, reportMore) {
  const budget = spec.report_bytes ?? 46;
  const entry = (id) => {
    if (id < 1 || id > spec.slots) return { userId: id, userIdStatus: 0xfe, userCode: "" };
    const status = node.state.get(key.status(id)) ?? 0;
    return { userId: id, userIdStatus: status,
             userCode: status === 0 ? "" : node.state.get(key.code(id)) ?? "" };
  };
  const userCodes = [entry(first)];
  // Header (CC, command, count) and the next user id: 5 bytes; each code 4 + its length.
  let used = 5 + 4 + userCodes[0].userCode.length;
  let id = first + 1;
  while (reportMore && id <= spec.slots) {
    const next = entry(id);
    const size = 4 + next.userCode.length;
    if (used + size > budget) break;
    userCodes.push(next);
    used += size;
    id += 1;
  }
  let nextUserId = 0;
  for (let i = userCodes[userCodes.length - 1].userId + 1; i <= spec.slots; i++) {
    if ((node.state.get(key.status(i)) ?? 0) !== 0) {
      nextUserId = i;
      break;
    }
  }
  return { userCodes, nextUserId };
}

function notify(node, controller, event, params) {
  const report = new cc.NotificationCCReport({
    nodeId: controller.ownNodeId,
    notificationType: 0x06,
    notificationEvent: event,
    eventParameters: params ? Buffer.from(params) : undefined,
  });
  return node.sendToController(testing.createMockZWaveRequestFrame(report, { ackRequested: false }));
}

function sendReport(node, controller, slot) {
  const status = node.state.get(key.status(slot)) ?? 0;
  const report = new cc.UserCodeCCReport({
    nodeId: controller.ownNodeId,
    userId: slot,
    userIdStatus: status,
    userCode: status === 0 ? "" : node.state.get(key.code(slot)) ?? "",
  });
  return node.sendToController(testing.createMockZWaveRequestFrame(report, { ackRequested: false }));
}

async function prepare(serial, mockPort) {
  const controller = await testing.MockController.create({
    homeId: 0x7e570001, ownNodeId: 1, mockPort, serial,
  });
  controller.defineBehavior(...createDefaultMockControllerBehaviors());
  const nodes = new Map();
  for (const spec of NODES) {
    const node = await testing.MockNode.create({
      id: spec.id, controller, capabilities: lockCapabilities(spec),
    });
    controller.addNode(node);
    node.defineBehavior(...lockBehaviors(spec), ...createDefaultMockNodeBehaviors());
    nodes.set(spec.id, { node, spec });
  }
  return { controller, nodes };
}

// -- control channel: act at the lock ---------------------------------------------------------
async function control(mocks, req) {
  const entry = mocks.nodes.get(req.node);
  if (req.op === "ping") return "pong";
  if (!entry) throw new Error(`no mock node ${req.node}`);
  const { node, spec } = entry;
  const controller = mocks.controller;
  switch (req.op) {
    case "slots": {
      // The lock's own memory, for tests to verify what is really programmed.
      const slots = {};
      for (let i = 1; i <= spec.slots; i++) {
        const status = node.state.get(key.status(i)) ?? 0;
        if (status !== 0) slots[i] = { status, code: node.state.get(key.code(i)) ?? "" };
      }
      return slots;
    }
    case "schedules": {
      const out = {};
      for (const [k, v] of node.state.entries()) {
        if (k.startsWith("ScheduleEntryLock_")) out[k] = v ?? null;
      }
      return out;
    }
    case "keypad_set": {
      // Someone programs a code at the keypad; the lock announces it.
      node.state.set(key.status(req.slot), 1);
      node.state.set(key.code(req.slot), String(req.code));
      await notify(node, controller, 0x0e, [req.slot]);
      return true;
    }
    case "keypad_clear": {
      node.state.set(key.status(req.slot), 0);
      node.state.set(key.code(req.slot), undefined);
      await notify(node, controller, 0x0d, [req.slot]);
      return true;
    }
    case "keypad_silent_set": {
      // A change the lock does not announce (some firmware): only a read finds it.
      node.state.set(key.status(req.slot), 1);
      node.state.set(key.code(req.slot), String(req.code));
      return true;
    }
    case "set_status": {
      // A slot's status and code changed at the lock without a word: 2 disabled, 0xfe (254)
      // the slot does not exist.
      node.state.set(key.status(req.slot), req.status);
      node.state.set(key.code(req.slot), req.code === undefined ? undefined : String(req.code));
      return true;
    }
    case "fail_sets": {
      node.state.set("fail_sets", req.count ?? 1);
      node.state.set("fail_sets_keep", !!req.keep);
      return true;
    }
    case "working_sets": {
      node.state.set("working_sets", req.count ?? 1);
      return true;
    }
    case "duplicate_params": {
      node.state.set("duplicate_params", !!req.value);
      return true;
    }
    case "report": {
      await sendReport(node, controller, req.slot);
      return true;
    }
    case "keypad_unlock": {
      // A full User Code Report as parameter, as Kwikset locks send it; zwave-js keeps the id.
      const status = node.state.get(key.status(req.slot)) ?? 0;
      const params = new cc.UserCodeCCReport({
        nodeId: controller.ownNodeId, userId: req.slot, userIdStatus: status,
        userCode: node.state.get(key.code(req.slot)) ?? "",
      });
      const report = new cc.NotificationCCReport({
        nodeId: controller.ownNodeId, notificationType: 0x06, notificationEvent: 0x06,
        eventParameters: Buffer.from(await params.serialize(node.encodingContext)),
      });
      await node.sendToController(
        testing.createMockZWaveRequestFrame(report, { ackRequested: false }));
      return true;
    }
    case "reset": {
      // A factory-fresh lock that answers again: no codes, no schedules.
      for (const k of [...node.state.keys()]) {
        if (k.startsWith("UserCode_user") || k.startsWith("ScheduleEntryLock_")) {
          node.state.delete(k);
        }
      }
      node.state.set("offline", false);
      node.state.set("unanswered_slots", []);
      node.state.set("received", {});
      node.autoAckControllerFrames = true;
      return true;
    }
    case "received": {
      // What the controller sent this node since the last call: {CC command name: count}.
      const counts = node.state.get("received") ?? {};
      node.state.set("received", {});
      return counts;
    }
    case "mute_slot": {
      const muted = node.state.get("unanswered_slots") ?? [];
      node.state.set("unanswered_slots", [...muted, req.slot]);
      return true;
    }
    case "offline": {
      node.state.set("offline", !!req.value);
      node.autoAckControllerFrames = !req.value;
      return true;
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

function startControl(mocks) {
  const server = net.createServer((socket) => {
    let pending = "";
    socket.setEncoding("utf8");
    socket.on("data", (data) => {
      pending += data;
      let nl;
      while ((nl = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (!line.trim()) continue;
        let req;
        try {
          req = JSON.parse(line);
        } catch (e) {
          socket.write(JSON.stringify({ ok: false, error: "bad json" }) + "\n");
          continue;
        }
        control(mocks, req).then(
          (result) => socket.write(JSON.stringify({ id: req.id, ok: true, result }) + "\n"),
          (err) => socket.write(JSON.stringify({ id: req.id, ok: false, error: String(err) }) + "\n"),
        );
      }
    });
    socket.on("error", () => {});
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: HOST, port: CONTROL_PORT }, () => resolve(server));
  });
}

// -- serial over TCP -------------------------------------------------------------------------
async function main() {
  const { serial, port: mockPort } = await createAndOpenMockedZWaveSerialPort();
  const mocks = await prepare(serial, mockPort);
  const faucet = new Faucet(serial.readable);
  const server = net.createServer((socket) => {
    const framer = new Framer();
    const writable = new WritableStream({
      write: (chunk) => {
        if (chunk.type !== ZWaveSerialFrameType.SerialAPI) return;
        socket.write(typeof chunk.data === "number" ? Uint8Array.from([chunk.data]) : chunk.data);
      },
    });
    faucet.connect(writable);
    socket.on("close", () => {
      faucet.disconnect();
      void writable.close().catch(() => {});
    });
    socket.on("error", () => {});
    // Frames are written one by one, in order, each awaited before the next.
    let queue = Promise.resolve();
    socket.on("data", (chunk) => {
      for (const frame of framer.push(chunk)) {
        queue = queue.then(() => serial.writeAsync(frame)).catch((e) => {
          console.error("error writing to the mock serial port", e);
        });
      }
    });
  });
  server.maxConnections = 1;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: HOST, port: PORT }, resolve);
  });
  const control = await startControl(mocks);
  // What the test harness waits for: the ports actually bound.
  const ready = JSON.stringify({ ready: true, port: server.address().port,
                                 control_port: control.address().port });
  const readyFile = arg("--ready-file");
  if (readyFile) {
    fs.writeFileSync(readyFile + ".tmp", ready);
    fs.renameSync(readyFile + ".tmp", readyFile);
  }
  console.log(ready);
  const stop = async () => {
    server.close();
    control.close();
    mocks.controller.destroy();
    await serial.close().catch(() => {});
    mockPort.destroy();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// The mock controller's promises reject when the host goes away in the middle of an exchange
// (an ACK that never comes). A real controller shrugs that off, so the launcher does too.
process.on("unhandledRejection", (reason) => {
  console.error("mock controller: ignoring", reason && reason.message ? reason.message : reason);
});

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
