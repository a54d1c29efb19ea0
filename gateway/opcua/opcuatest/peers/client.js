#!/usr/bin/env node
// A node-opcua client driven by a JSON scenario (argv[2], or stdin when
// there is no argument). It prints one JSON object a line: first
// {"step":"connect",...} and {"step":"session",...}, then one per step, then
// {"step":"close",...}.
//
// Scenario:
//   {"endpoint": "opc.tcp://127.0.0.1:4840",
//    "securityPolicy": "None" | "Basic256Sha256" | ...,      default None
//    "securityMode": "None" | "Sign" | "SignAndEncrypt",      default None
//    "user": "alice", "password": "engineer-pw",              anonymous when user is absent
//    "certDir": "/tmp/x",        client PKI root (own certificate created there)
//    "applicationName": "...", "applicationUri": "...",
//    "tokenLifetimeMs": 5000,     requested secure channel token lifetime
//    "certificateOnly": true,     only create the client certificate in certDir
//    "timeoutMs": 10000,          per request
//    "steps": [
//      {"read": ["ns=1;s=Temperature", ...]},
//      {"readRaw": ["ns=1;s=Recipe"]},   a Read as sent: structures of types the client
//                                         cannot decode stay {typeId, body} (base64)
//      {"write": [{"node": "ns=1;s=Setpoint", "value": 42.5, "dataType": "Double"}]},
//      {"write": [{"node": "ns=1;s=Recipe", "dataType": "ExtensionObject",
//                  "value": {"typeId": "ns=1;i=5001", "body": "<base64>"}}]},   a structure as its bytes
//      {"call": {"object": "ns=1;s=PLC", "method": "ns=1;s=Start", "args": [{"dataType": "Int32", "value": 100}]}},
//      {"browse": "ns=1;s=PLC"},
//      {"subscribe": {"node": "ns=1;s=Temperature", "samples": 3, "interval": 100, "timeoutMs": 10000}},
//      {"readLoop": {"node": "ns=1;s=Temperature", "seconds": 60}},
//      {"trigger": {"triggering": "ns=1;s=Setpoint", "linked": ["ns=1;s=Counter", "ns=1;s=Pressure"],
//                   "write": {"node": "ns=1;s=Setpoint", "value": 61.5, "dataType": "Double"},
//                   "interval": 100, "timeoutMs": 10000}},
//      {"transfer": {"node": "ns=1;s=Temperature", "samples": 2, "interval": 100,
//                    "to": {"user": "alice", "password": "engineer-pw"}, "sendInitialValues": true, "timeoutMs": 10000}},
//      {"sleep": 500}
//    ]}
//
// trigger: a subscription with a Reporting item on "triggering" and a Sampling
// item on each "linked" node, then SetTriggering (the linked items as the links to add),
// then the write (a change of the triggering node). It reports the
// SetTriggering status and addResults, the write's status, and the
// notifications: the triggering item's until it reports the written value,
// the linked items' until five publishing intervals later.
//
// transfer: a subscription with one item on "node" in the scenario's session
// (A), which first receives a sample; then a second connection opens session
// B with the identity "to" (anonymous without a user) and calls
// TransferSubscriptions for it. Transferred: B publishes until it has
// "samples" data changes, A's status changes (Good_SubscriptionTransferred)
// are collected, and B deletes the subscription. Refused: A must go on
// receiving "samples" more samples.
//
// Status codes are printed as {"name": "BadOutOfRange", "code": 2151350272}.
// Exit status: 0 when the scenario ran (whatever the steps' status codes),
// 2 when the connection failed, 3 when the session could not be opened,
// 1 on a bad scenario or an unexpected error; the error is in the JSON line.
"use strict";

const fs = require("fs");
const {
    OPCUAClient,
    OPCUACertificateManager,
    MessageSecurityMode,
    SecurityPolicy,
    AttributeIds,
    DataType,
    StatusCodes,
    UserTokenType,
    TimestampsToReturn,
    BrowseDirection,
    NodeClass,
    ClientSubscription,
    ClientMonitoredItem,
    MonitoringMode,
    ReadRequest,
} = require("node-opcua");
const { OpaqueStructure } = require("node-opcua-extension-object");
const { resolveNodeId } = require("node-opcua-nodeid");

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function status(sc) {
    if (!sc) return { name: "Good", code: 0 };
    return { name: sc.name, code: sc.value >>> 0 };
}

// The status code an error names, when it names one (BadUserAccessDenied ...).
function errorStatus(err) {
    const text = String(err && err.message ? err.message : err);
    const m = text.match(/\b(Bad[A-Za-z]+)\b/);
    if (m && StatusCodes[m[1]]) return status(StatusCodes[m[1]]);
    return undefined;
}

function plain(v) {
    if (v === null || v === undefined) return null;
    if (Buffer.isBuffer(v)) return v.toString("base64");
    if (v instanceof Date) return v.toISOString();
    if (ArrayBuffer.isView(v)) return Array.from(v);
    if (Array.isArray(v)) return v.map(plain);
    if (v instanceof OpaqueStructure) return { typeId: v.nodeId.toString(), body: v.buffer.toString("base64") };
    if (typeof v === "object") {
        if (typeof v.toJSON === "function") return v.toJSON();
        return String(v);
    }
    return v;
}

function variant(v) {
    if (!v) return { dataType: "Null", value: null };
    return { dataType: DataType[v.dataType], value: plain(v.value) };
}

function dataValue(node, dv) {
    return Object.assign({ node, status: status(dv.statusCode) }, variant(dv.value));
}

function dataType(name) {
    const t = DataType[name];
    if (t === undefined || typeof t !== "number") throw new Error(`unknown dataType ${name}`);
    return t;
}

// The value of a write step: an ExtensionObject is given as {typeId, body}
// (base64), and written as those bytes under that encoding id.
function writeValue(w) {
    if (w.dataType === "ExtensionObject" && w.value && w.value.typeId !== undefined) {
        return new OpaqueStructure(resolveNodeId(w.value.typeId), Buffer.from(w.value.body || "", "base64"));
    }
    return w.value;
}

async function readScenario() {
    if (process.argv.length > 2) return JSON.parse(process.argv[2]);
    return JSON.parse(fs.readFileSync(0, "utf8"));
}

async function run(session, step) {
    if (step.read) {
        const dvs = await session.read(step.read.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
        return { step: "read", results: dvs.map((dv, i) => dataValue(step.read[i], dv)) };
    }
    if (step.readRaw) {
        // the Read service itself: session.read would ask the server for
        // the definitions of structures it cannot decode
        const request = new ReadRequest({
            nodesToRead: step.readRaw.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })),
            timestampsToReturn: TimestampsToReturn.Neither,
        });
        const response = await new Promise((resolve, reject) =>
            session.performMessageTransaction(request, (err, r) => (err ? reject(err) : resolve(r))));
        return { step: "readRaw", results: response.results.map((dv, i) => dataValue(step.readRaw[i], dv)) };
    }
    if (step.write) {
        const codes = await session.write(step.write.map((w) => ({
            nodeId: w.node,
            attributeId: AttributeIds.Value,
            value: { value: { dataType: dataType(w.dataType), value: writeValue(w) } },
        })));
        return { step: "write", results: codes.map((sc, i) => ({ node: step.write[i].node, status: status(sc) })) };
    }
    if (step.call) {
        const c = step.call;
        const r = await session.call({
            objectId: c.object,
            methodId: c.method,
            inputArguments: (c.args || []).map((a) => ({ dataType: dataType(a.dataType), value: a.value })),
        });
        return {
            step: "call",
            status: status(r.statusCode),
            inputArgumentResults: (r.inputArgumentResults || []).map(status),
            outputs: (r.outputArguments || []).map(variant),
        };
    }
    if (step.browse) {
        const r = await session.browse({
            nodeId: step.browse,
            browseDirection: BrowseDirection.Forward,
            includeSubtypes: true,
            resultMask: 63,
        });
        return {
            step: "browse",
            node: step.browse,
            status: status(r.statusCode),
            references: (r.references || []).map((ref) => ({
                browseName: ref.browseName.name,
                nodeId: ref.nodeId.toString(),
                nodeClass: NodeClass[ref.nodeClass],
            })),
        };
    }
    if (step.subscribe) {
        return subscribe(session, step.subscribe);
    }
    if (step.readLoop) {
        const { node, seconds } = step.readLoop;
        const end = Date.now() + seconds * 1000;
        let reads = 0;
        let errors = 0;
        let readsAfterLastError = 0;
        let firstError;
        let lastError;
        while (Date.now() < end) {
            let failure;
            try {
                const dv = await session.read({ nodeId: node, attributeId: AttributeIds.Value });
                if (!dv.statusCode.isGood()) failure = status(dv.statusCode).name;
            } catch (err) {
                failure = String(err.message || err);
                // a broken connection fails at once: do not spin
                await new Promise((res) => setTimeout(res, 50));
            }
            if (failure === undefined) {
                reads++;
                readsAfterLastError++;
            } else {
                errors++;
                readsAfterLastError = 0;
                firstError = firstError || failure;
                lastError = failure;
            }
        }
        return { step: "readLoop", node, reads, errors, readsAfterLastError, firstError, lastError };
    }
    if (step.trigger) {
        return trigger(session, step.trigger);
    }
    if (step.transfer) {
        return transfer(session, step.transfer);
    }
    if (step.sleep !== undefined) {
        await new Promise((res) => setTimeout(res, step.sleep));
        return { step: "sleep" };
    }
    throw new Error(`unknown step ${JSON.stringify(step)}`);
}

// startSubscription creates a subscription and waits until it started.
async function startSubscription(session, interval, timeoutMs) {
    const sub = ClientSubscription.create(session, {
        requestedPublishingInterval: interval,
        requestedLifetimeCount: 100,
        requestedMaxKeepAliveCount: 10,
        maxNotificationsPerPublish: 100,
        publishingEnabled: true,
        priority: 1,
    });
    await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("the subscription did not start")), timeoutMs);
        const fail = (err) => {
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(String(err)));
        };
        sub.once("started", () => {
            clearTimeout(timer);
            resolve();
        });
        sub.once("internal_error", fail);
        sub.once("error", fail);
    }).catch(async (err) => {
        await sub.terminate().catch(() => {});
        throw err;
    });
    return sub;
}

async function subscribe(session, s) {
    const samples = s.samples || 1;
    const interval = s.interval || 100;
    const sub = await startSubscription(session, interval, s.timeoutMs || 10000);
    const got = [];
    let item;
    let createStatus;
    try {
        await new Promise((resolve, reject) => {
            const timer = setTimeout(() => resolve(), s.timeoutMs || 10000);
            item = ClientMonitoredItem.create(sub, { nodeId: s.node, attributeId: AttributeIds.Value },
                { samplingInterval: interval, discardOldest: true, queueSize: 10 }, TimestampsToReturn.Both);
            item.on("changed", (dv) => {
                // One Publish response may carry several notifications:
                // keep exactly the samples asked for.
                if (got.length >= samples) return;
                got.push(dataValue(s.node, dv));
                if (got.length >= samples) {
                    clearTimeout(timer);
                    resolve();
                }
            });
            item.on("err", (msg) => {
                createStatus = errorStatus(msg) || { name: String(msg), code: -1 };
                clearTimeout(timer);
                resolve();
            });
            item.once("initialized", () => {
                createStatus = status(item.statusCode);
            });
        });
    } finally {
        await sub.terminate().catch(() => {});
    }
    return { step: "subscribe", node: s.node, status: createStatus || status(item && item.statusCode), samples: got };
}

// waitFor resolves when cond() holds or after ms, whichever comes first.
async function waitFor(cond, ms) {
    const end = Date.now() + ms;
    while (!cond() && Date.now() < end) {
        await new Promise((res) => setTimeout(res, 20));
    }
    return cond();
}

// monitor creates a data-change item on node in the given monitoring mode,
// collecting its notifications into samples; it resolves with the item once
// the server answered, and throws when the server refused it.
async function monitor(sub, node, interval, mode, samples) {
    const item = ClientMonitoredItem.create(sub, { nodeId: node, attributeId: AttributeIds.Value },
        { samplingInterval: interval, discardOldest: true, queueSize: 10 }, TimestampsToReturn.Both, mode);
    item.on("changed", (dv) => samples.push(dataValue(node, dv)));
    await new Promise((resolve, reject) => {
        item.once("initialized", resolve);
        item.once("err", (msg) => reject(new Error(`monitored item ${node}: ${msg}`)));
    });
    return item;
}

function writeRequest(w) {
    return { nodeId: w.node, attributeId: AttributeIds.Value, value: { value: { dataType: dataType(w.dataType), value: w.value } } };
}

async function trigger(session, t) {
    const interval = t.interval || 100;
    const timeoutMs = t.timeoutMs || 10000;
    const sub = await startSubscription(session, interval, timeoutMs);
    const triggering = [];
    const linked = [];
    try {
        const trig = await monitor(sub, t.triggering, interval, MonitoringMode.Reporting, triggering);
        const links = [];
        for (const node of t.linked) links.push(await monitor(sub, node, interval, MonitoringMode.Sampling, linked));
        // The triggering item's first report: the subscription delivers.
        if (!await waitFor(() => triggering.length > 0, timeoutMs)) throw new Error("no first notification of the triggering item");
        let st;
        let addResults = [];
        try {
            const r = await sub.setTriggering(trig, links, []);
            st = status(r.responseHeader.serviceResult);
            addResults = (r.addResults || []).map(status);
        } catch (err) {
            st = errorStatus(err) || { name: String(err.message || err), code: -1 };
        }
        const codes = await session.write([writeRequest(t.write)]);
        const written = (v) => v.value === t.write.value;
        await waitFor(() => triggering.some(written), timeoutMs);
        await new Promise((res) => setTimeout(res, 5 * interval));
        return {
            step: "trigger",
            node: t.triggering,
            status: st,
            addResults,
            results: codes.map((sc) => ({ node: t.write.node, status: status(sc) })),
            triggering,
            linked,
        };
    } finally {
        await sub.terminate().catch(() => {});
    }
}

// connectAnother opens a second connection with the scenario's options and
// a session with the identity who ({user, password}, anonymous without user).
async function connectAnother(sc, who) {
    const client = OPCUAClient.create(clientOptions(sc));
    await client.connect(sc.endpoint);
    try {
        const session = await client.createSession(identityOf(who || {}));
        return { client, session };
    } catch (err) {
        await client.disconnect().catch(() => {});
        throw err;
    }
}

async function transfer(session, t) {
    const interval = t.interval || 100;
    const timeoutMs = t.timeoutMs || 10000;
    const samples = t.samples || 1;
    const sub = await startSubscription(session, interval, timeoutMs);
    const before = [];
    const after = [];
    const moved = [];
    const statusChanges = [];
    let answered = false;
    sub.on("status_changed", (sc) => statusChanges.push(status(sc)));
    let other;
    try {
        const item = ClientMonitoredItem.create(sub, { nodeId: t.node, attributeId: AttributeIds.Value },
            { samplingInterval: interval, discardOldest: true, queueSize: 10 }, TimestampsToReturn.Both);
        item.on("changed", (dv) => (answered ? after : before).push(dataValue(t.node, dv)));
        if (!await waitFor(() => before.length > 0, timeoutMs)) throw new Error("no notification before the transfer");
        other = await connectAnother(scenario, t.to);
        let st;
        let transferResults = [];
        try {
            const r = await other.session.transferSubscriptions({ subscriptionIds: [sub.subscriptionId], sendInitialValues: !!t.sendInitialValues });
            st = status(r.responseHeader.serviceResult);
            transferResults = (r.results || []).map((x) => status(x.statusCode));
        } catch (err) {
            st = errorStatus(err) || { name: String(err.message || err), code: -1 };
        }
        answered = true;
        if (transferResults.length === 1 && transferResults[0].code === 0) {
            // The subscription is B's now: B's Publish requests carry its
            // notifications.
            let acks = [];
            const end = Date.now() + timeoutMs;
            while (moved.length < samples && Date.now() < end) {
                const r = await other.session.publish({ subscriptionAcknowledgements: acks });
                acks = [];
                const msg = r.notificationMessage;
                if (msg && msg.notificationData && msg.notificationData.length > 0) {
                    acks.push({ subscriptionId: r.subscriptionId, sequenceNumber: msg.sequenceNumber });
                    for (const n of msg.notificationData) {
                        for (const m of (n && n.monitoredItems) || []) {
                            if (moved.length < samples) moved.push(dataValue(t.node, m.value));
                        }
                    }
                }
            }
            await waitFor(() => statusChanges.length > 0, timeoutMs);
            await other.session.deleteSubscriptions({ subscriptionIds: [sub.subscriptionId] }).catch(() => {});
        } else {
            await waitFor(() => after.length >= samples, timeoutMs);
        }
        return {
            step: "transfer",
            node: t.node,
            status: st,
            transferResults,
            samples: before,
            moved,
            after: after.slice(0, samples),
            statusChanges,
        };
    } finally {
        if (other) {
            await other.session.close().catch(() => {});
            await other.client.disconnect().catch(() => {});
        }
        await sub.terminate().catch(() => {});
    }
}

function clientOptions(sc) {
    const policy = sc.securityPolicy || "None";
    const mode = sc.securityMode || "None";
    const options = {
        applicationName: sc.applicationName || "interlock-test-client",
        securityPolicy: SecurityPolicy[policy],
        securityMode: MessageSecurityMode[mode],
        endpointMustExist: false,
        connectionStrategy: sc.reconnect
            ? { maxRetry: 20, initialDelay: 100, maxDelay: 500 }
            : { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        requestedSessionTimeout: 60000,
        transportTimeout: sc.timeoutMs || 10000,
    };
    if (sc.applicationUri) options.applicationUri = sc.applicationUri;
    if (sc.tokenLifetimeMs) options.defaultSecureTokenLifetime = sc.tokenLifetimeMs;
    if (sc.certDir) {
        options.clientCertificateManager = new OPCUACertificateManager({
            rootFolder: sc.certDir,
            automaticallyAcceptUnknownCertificate: true,
        });
    }
    return options;
}

function identityOf(who) {
    return who.user !== undefined
        ? { type: UserTokenType.UserName, userName: who.user, password: who.password || "" }
        : { type: UserTokenType.Anonymous };
}

let scenario;

async function main() {
    let sc;
    try {
        sc = await readScenario();
    } catch (err) {
        out({ step: "scenario", ok: false, error: String(err.message || err) });
        process.exit(1);
    }
    scenario = sc;
    const policy = sc.securityPolicy || "None";
    const mode = sc.securityMode || "None";
    const options = clientOptions(sc);
    if (options.securityPolicy === undefined) {
        out({ step: "connect", ok: false, error: `unknown securityPolicy ${policy}` });
        process.exit(1);
    }
    if (options.securityMode === undefined) {
        out({ step: "connect", ok: false, error: `unknown securityMode ${mode}` });
        process.exit(1);
    }

    const client = OPCUAClient.create(options);
    if (sc.certificateOnly) {
        // Create the client's application certificate in certDir and stop:
        // a server can trust it before the first connection.
        try {
            await client.initializeCM();
        } catch (err) {
            out({ step: "certificate", ok: false, error: String(err.message || err) });
            process.exit(1);
        }
        out({ step: "certificate", ok: true });
        process.exit(0);
    }
    let renewals = 0;
    client.on("security_token_renewed", () => renewals++);
    try {
        await client.connect(sc.endpoint);
    } catch (err) {
        out({ step: "connect", ok: false, error: String(err.message || err), status: errorStatus(err) });
        process.exit(2);
    }
    out({ step: "connect", ok: true, securityPolicy: policy, securityMode: mode });

    let session;
    try {
        session = await client.createSession(identityOf(sc));
    } catch (err) {
        out({ step: "session", ok: false, error: String(err.message || err), status: errorStatus(err) });
        await client.disconnect().catch(() => {});
        process.exit(3);
    }
    out({ step: "session", ok: true, user: sc.user || "" });

    for (const step of sc.steps || []) {
        try {
            out(await run(session, step));
        } catch (err) {
            const name = Object.keys(step)[0];
            out({ step: name, error: String(err.message || err), status: errorStatus(err) });
        }
    }

    await session.close().catch(() => {});
    await client.disconnect().catch(() => {});
    out({ step: "close", ok: true, tokenRenewals: renewals });
    process.exit(0);
}

main().catch((err) => {
    out({ step: "error", ok: false, error: String(err && err.stack ? err.stack : err) });
    process.exit(1);
});
