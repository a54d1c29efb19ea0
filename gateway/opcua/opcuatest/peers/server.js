#!/usr/bin/env node
// A node-opcua server standing in for a controller in tests: a PLC object
// with a few variables and a method with arguments, two users, and switches
// for security, anonymous access and a Publish that hangs.
//
//   node server.js --pki DIR [--port 0] [--security None,Basic256Sha256]
//                  [--modes None,Sign,SignAndEncrypt] [--anonymous true|false]
//                  [--accept-unknown] [--hang-publish-ms N]
//
// Address space (namespace 1, under Objects/PLC):
//   ns=1;s=Temperature  Double, changes every 100 ms
//   ns=1;s=Setpoint     Double, writable
//   ns=1;s=Pressure     Double
//   ns=1;s=Counter      Int32, writable
//   ns=1;s=Speed        Int32, the speed of the last accepted Start
//   ns=1;s=Start        method Start(speed Int32) -> (accepted Boolean);
//                       speed > 1000 is refused with BadOutOfRange
//   ns=1;s=Wait         method Wait(ms UInt32): answers after ms (at most 60000)
// Users: alice/engineer-pw (role engineer), bob/operator-pw (role operator).
// node-opcua offers UserName tokens on a None endpoint only when the server
// also offers a policy to encrypt the password with (Basic256Sha256 ...).
//
// When listening it prints one JSON line: {"ready":true,"endpoint":"opc.tcp://127.0.0.1:PORT"}.
// Commands, one JSON object a line on stdin, each answered with one JSON line:
//   {"cmd":"hangPublish","ms":N}   delay every Publish response by N ms (0: no delay)
//   {"cmd":"get","node":"ns=1;s=Setpoint"}   the value in the address space
//   {"cmd":"trust","der":"<base64>"}  trust a client certificate (out of rejected/)
// The server stops on SIGTERM, SIGINT or when stdin closes.
"use strict";

const net = require("net");
const path = require("path");
const readline = require("readline");
const {
    OPCUAServer,
    OPCUACertificateManager,
    Variant,
    DataType,
    VariantArrayType,
    StatusCodes,
    SecurityPolicy,
    MessageSecurityMode,
    WellKnownRoles,
    makeRoles,
    nodesets,
} = require("node-opcua");
const { OpaqueStructure } = require("node-opcua-extension-object");
const { resolveNodeId } = require("node-opcua-nodeid");

function parseArgs(argv) {
    const o = { port: 0, security: "None", modes: "", anonymous: true, acceptUnknown: false, hangPublishMs: 0, pki: "" };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
            case "--pki": o.pki = next(); break;
            case "--port": o.port = parseInt(next(), 10); break;
            case "--security": o.security = next(); break;
            case "--modes": o.modes = next(); break;
            case "--anonymous": o.anonymous = next() !== "false"; break;
            case "--accept-unknown": o.acceptUnknown = true; break;
            case "--hang-publish-ms": o.hangPublishMs = parseInt(next(), 10); break;
            default: throw new Error(`unknown argument ${a}`);
        }
    }
    if (!o.pki) throw new Error("--pki DIR is required");
    return o;
}

const users = {
    alice: { password: "engineer-pw", roles: [WellKnownRoles.Engineer] },
    bob: { password: "operator-pw", roles: [WellKnownRoles.Operator] },
};

function list(s) {
    return s.split(",").map((x) => x.trim()).filter((x) => x !== "");
}

function policies(names) {
    return list(names).map((n) => {
        const p = SecurityPolicy[n];
        if (!p) throw new Error(`unknown security policy ${n}`);
        return p;
    });
}

function modes(names, pols) {
    if (names === "") {
        // None for the None policy, SignAndEncrypt and Sign for the others.
        const m = [];
        if (pols.includes(SecurityPolicy.None)) m.push(MessageSecurityMode.None);
        if (pols.some((p) => p !== SecurityPolicy.None)) m.push(MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt);
        return m;
    }
    return list(names).map((n) => {
        const m = MessageSecurityMode[n];
        if (m === undefined) throw new Error(`unknown security mode ${n}`);
        return m;
    });
}

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function plain(v) {
    if (v === null || v === undefined) return null;
    if (Buffer.isBuffer(v)) return v.toString("base64");
    if (v instanceof Date) return v.toISOString();
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof OpaqueStructure) return { typeId: v.nodeId.toString(), body: v.buffer.toString("base64") };
    if (typeof v === "object" && typeof v.toString === "function" && v.constructor && v.constructor.name === "NodeId") return v.toString();
    return v;
}

// A free port on 127.0.0.1. node-opcua can listen on port 0, but it builds
// its endpoint descriptions (GetEndpoints) before it knows the port.
function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

async function main() {
    const o = parseArgs(process.argv.slice(2));
    if (!o.port) o.port = await freePort();
    const pols = policies(o.security);
    const serverCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(o.pki, "server"),
        automaticallyAcceptUnknownCertificate: o.acceptUnknown,
    });
    await serverCertificateManager.initialize();
    const userCertificateManager = new OPCUACertificateManager({
        rootFolder: path.join(o.pki, "user"),
        automaticallyAcceptUnknownCertificate: o.acceptUnknown,
    });
    await userCertificateManager.initialize();

    const server = new OPCUAServer({
        port: o.port,
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        nodeset_filename: [nodesets.standard],
        serverCertificateManager,
        userCertificateManager,
        securityPolicies: pols,
        securityModes: modes(o.modes, pols),
        allowAnonymous: o.anonymous,
        userManager: {
            isValidUser(userName, password) {
                const u = users[userName];
                return u !== undefined && u.password === password;
            },
            getUserRoles(userName) {
                const u = users[userName];
                return u ? makeRoles(u.roles) : [];
            },
        },
        buildInfo: { productName: "interlock-test-plc", manufacturerName: "interlock tests" },
        serverInfo: { applicationUri: "urn:interlock:test:node-opcua-server", productUri: "urn:interlock:test" },
    });
    await server.initialize();

    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.getOwnNamespace();
    const plc = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "PLC", nodeId: "s=PLC" });

    let temperature = 20.0;
    let tick = 0;
    const temperatureVar = ns.addVariable({
        componentOf: plc,
        browseName: "Temperature",
        nodeId: "s=Temperature",
        dataType: "Double",
        minimumSamplingInterval: 100,
        value: { get: () => new Variant({ dataType: DataType.Double, value: temperature }) },
    });
    const timer = setInterval(() => {
        tick++;
        temperature = 20.0 + 5.0 * Math.sin(tick / 10) + tick * 1e-6;
        temperatureVar.touchValue && temperatureVar.touchValue();
    }, 100);

    const setpoint = ns.addVariable({
        componentOf: plc,
        browseName: "Setpoint",
        nodeId: "s=Setpoint",
        dataType: "Double",
        accessLevel: "CurrentRead | CurrentWrite",
        userAccessLevel: "CurrentRead | CurrentWrite",
        value: new Variant({ dataType: DataType.Double, value: 50.0 }),
    });
    ns.addVariable({
        componentOf: plc,
        browseName: "Pressure",
        nodeId: "s=Pressure",
        dataType: "Double",
        value: new Variant({ dataType: DataType.Double, value: 1.013 }),
    });
    const counter = ns.addVariable({
        componentOf: plc,
        browseName: "Counter",
        nodeId: "s=Counter",
        dataType: "Int32",
        accessLevel: "CurrentRead | CurrentWrite",
        userAccessLevel: "CurrentRead | CurrentWrite",
        value: new Variant({ dataType: DataType.Int32, value: 0 }),
    });
    const speed = ns.addVariable({
        componentOf: plc,
        browseName: "Speed",
        nodeId: "s=Speed",
        dataType: "Int32",
        value: new Variant({ dataType: DataType.Int32, value: 0 }),
    });

    // A historized value: node-opcua keeps its changes in memory and answers
    // HistoryRead (raw) from them.
    const level = ns.addVariable({
        componentOf: plc,
        browseName: "Level",
        nodeId: "s=Level",
        dataType: "Double",
        accessLevel: "CurrentRead | CurrentWrite | HistoryRead",
        userAccessLevel: "CurrentRead | CurrentWrite | HistoryRead",
        value: new Variant({ dataType: DataType.Double, value: 0.5 }),
    });
    addressSpace.installHistoricalDataNode(level, { maxOnlineValues: 1000 });

    // A vendor's structure: an ExtensionObject whose encoding (ns=1;i=5001)
    // no codec knows but the PLC's own tools; node-opcua keeps its bytes
    // (OpaqueStructure). node-opcua copies a value by calling its class's
    // constructor with the value, which OpaqueStructure's does not take:
    // KeptStructure does.
    class KeptStructure extends OpaqueStructure {
        constructor(nodeId, buffer) {
            if (nodeId instanceof OpaqueStructure) {
                buffer = Buffer.from(nodeId.buffer);
                nodeId = nodeId.nodeId;
            }
            super(nodeId, buffer);
        }
    }
    let recipe = new KeptStructure(resolveNodeId("ns=1;i=5001"), Buffer.from("recipe 7: 120 rpm, 35 s"));
    ns.addVariable({
        componentOf: plc,
        browseName: "Recipe",
        nodeId: "s=Recipe",
        dataType: "Structure",
        accessLevel: "CurrentRead | CurrentWrite",
        userAccessLevel: "CurrentRead | CurrentWrite",
        minimumSamplingInterval: 100,
        value: {
            get: () => new Variant({ dataType: DataType.ExtensionObject, value: recipe }),
            set: (variant) => {
                if (!(variant.value instanceof OpaqueStructure)) return StatusCodes.BadTypeMismatch;
                recipe = new KeptStructure(variant.value);
                return StatusCodes.Good;
            },
        },
    });

    // A large value: 20,000 Int32s (80 kB encoded), for the limits on what
    // a response may take decoded.
    ns.addVariable({
        componentOf: plc,
        browseName: "Trend",
        nodeId: "s=Trend",
        dataType: "Int32",
        valueRank: 1,
        arrayDimensions: [20000],
        value: new Variant({ dataType: DataType.Int32, arrayType: VariantArrayType.Array, value: Int32Array.from({ length: 20000 }, (_, i) => i) }),
    });

    const start = ns.addMethod(plc, {
        browseName: "Start",
        nodeId: "s=Start",
        inputArguments: [{ name: "speed", description: { text: "motor speed, rpm (at most 1000)" }, dataType: DataType.Int32 }],
        outputArguments: [{ name: "accepted", description: { text: "true when the drive took the command" }, dataType: DataType.Boolean }],
    });
    start.bindMethod((inputArguments, _context, callback) => {
        const s = inputArguments[0].value;
        if (s > 1000 || s < 0) {
            callback(null, { statusCode: StatusCodes.BadOutOfRange, outputArguments: [] });
            return;
        }
        speed.setValueFromSource(new Variant({ dataType: DataType.Int32, value: s }));
        callback(null, {
            statusCode: StatusCodes.Good,
            outputArguments: [new Variant({ dataType: DataType.Boolean, value: true })],
        });
    });

    const wait = ns.addMethod(plc, {
        browseName: "Wait",
        nodeId: "s=Wait",
        inputArguments: [{ name: "ms", description: { text: "how long to take, in milliseconds" }, dataType: DataType.UInt32 }],
        outputArguments: [],
    });
    wait.bindMethod((inputArguments, _context, callback) => {
        const ms = Math.min(inputArguments[0].value, 60000);
        setTimeout(() => callback(null, { statusCode: StatusCodes.Good, outputArguments: [] }), ms);
    });

    // A Publish that hangs: the handler is looked up by name on the server
    // for every request, so wrapping it delays only Publish responses.
    let hangPublishMs = o.hangPublishMs;
    const onPublish = server._on_PublishRequest;
    server._on_PublishRequest = function (message, channel) {
        if (hangPublishMs > 0) {
            setTimeout(() => onPublish.call(this, message, channel), hangPublishMs);
            return;
        }
        onPublish.call(this, message, channel);
    };

    await server.start();
    const port = server.endpoints[0].port;
    out({ ready: true, endpoint: `opc.tcp://127.0.0.1:${port}`, port });

    // Events: every 200 ms the Server object raises a BaseEventType event
    // with the message "line1 tick N" and severity 300 (subscribe to the
    // EventNotifier of i=2253).
    const baseEventType = addressSpace.findEventType("BaseEventType");
    let eventTick = 0;
    const eventTimer = setInterval(() => {
        eventTick++;
        addressSpace.rootFolder.objects.server.raiseEvent(baseEventType, {
            message: { dataType: DataType.LocalizedText, value: { text: `line1 tick ${eventTick}` } },
            severity: { dataType: DataType.UInt16, value: 300 },
        });
    }, 200);

    const nodes = { "ns=1;s=Setpoint": setpoint, "ns=1;s=Counter": counter, "ns=1;s=Speed": speed };
    let stopping = false;
    const stop = async (code) => {
        if (stopping) return;
        stopping = true;
        clearInterval(timer);
        clearInterval(eventTimer);
        try {
            await server.shutdown(0);
        } catch (_) {
            // exiting anyway
        }
        process.exit(code);
    };
    process.on("SIGTERM", () => stop(0));
    process.on("SIGINT", () => stop(0));

    const rl = readline.createInterface({ input: process.stdin });
    rl.on("line", (line) => {
        if (line.trim() === "") return;
        let cmd;
        try {
            cmd = JSON.parse(line);
        } catch (err) {
            out({ ok: false, error: `bad command: ${err.message}` });
            return;
        }
        switch (cmd.cmd) {
            case "hangPublish":
                hangPublishMs = cmd.ms || 0;
                out({ ok: true, hangPublishMs });
                break;
            case "get": {
                const node = nodes[cmd.node] || addressSpace.findNode(cmd.node);
                if (!node || !node.readValue) {
                    out({ ok: false, error: `no variable ${cmd.node}` });
                    break;
                }
                const dv = node.readValue();
                out({ ok: true, node: cmd.node, value: plain(dv.value.value) });
                break;
            }
            case "trust":
                serverCertificateManager.trustCertificate(Buffer.from(cmd.der, "base64"))
                    .then(() => out({ ok: true }))
                    .catch((err) => out({ ok: false, error: String(err.message || err) }));
                break;
            default:
                out({ ok: false, error: `unknown command ${cmd.cmd}` });
        }
    });
    rl.on("close", () => stop(0));
}

main().catch((err) => {
    out({ ready: false, error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
});
