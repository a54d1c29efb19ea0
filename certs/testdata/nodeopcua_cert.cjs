// Reads certificates the way node-opcua does, for certs/interop_test.go.
//
//   node nodeopcua_cert.cjs explore CERT.der
//     prints what node-opcua-crypto's exploreCertificate reads from a
//     certificate, and how node-opcua-pki's CertificateManager judges it
//     before and after it is trusted (a node-opcua client checks a server
//     certificate this way).
//   node nodeopcua_cert.cjs make OUT.pem URI HOST
//     makes a self-signed application certificate with node-opcua-pki, as a
//     node-opcua client or server makes its own.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { exploreCertificate, verifyCertificateSignature } = require("node-opcua-crypto");
const { CertificateManager } = require("node-opcua-pki");

async function withManager(fn) {
  const loc = fs.mkdtempSync(path.join(os.tmpdir(), "interlock-nodepki-"));
  const cm = new CertificateManager({ location: loc, disableFileWatchers: true });
  try {
    await cm.initialize();
    return await fn(cm, loc);
  } finally {
    await cm.dispose();
    fs.rmSync(loc, { recursive: true, force: true });
  }
}

async function explore(file) {
  const der = fs.readFileSync(file);
  const info = exploreCertificate(der);
  const ext = info.tbsCertificate.extensions || {};
  const san = ext.subjectAltName || {};
  const out = {
    applicationUri: (san.uniformResourceIdentifier || [])[0] || null,
    dns: san.dNSName || [],
    ip: san.iPAddress || [],
    keyUsage: ext.keyUsage || null,
    extKeyUsage: ext.extKeyUsage || null,
    basicConstraints: ext.basicConstraints || null,
    keyLengthBytes: info.tbsCertificate.subjectPublicKeyInfo.keyLength,
    selfSigned: !!ext.subjectKeyIdentifier && ext.subjectKeyIdentifier === (ext.authorityKeyIdentifier || {}).keyIdentifier,
    signatureOK: verifyCertificateSignature(der, der),
  };
  await withManager(async (cm) => {
    out.statusUnknown = await cm.verifyCertificate(der);
    await cm.trustCertificate(der);
    out.statusTrusted = await cm.verifyCertificate(der);
  });
  return out;
}

async function make(outFile, uri, host) {
  await withManager(async (cm) => {
    await cm.createSelfSignedCertificate({
      applicationUri: uri,
      subject: "/CN=node-opcua test client/O=Interlock tests",
      dns: [host],
      validity: 30,
      outputFile: outFile,
    });
  });
  return { file: outFile };
}

(async () => {
  const [cmd, ...args] = process.argv.slice(2);
  let out;
  if (cmd === "explore") out = await explore(args[0]);
  else if (cmd === "make") out = await make(args[0], args[1], args[2]);
  else throw new Error("usage: explore CERT | make OUT URI HOST");
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
