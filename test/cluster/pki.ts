// PKI for the test control plane, made with the system's openssl. ECDSA P-256 keys keep generation
// well under a second, and every Kubernetes component accepts them (ES256 for service-account tokens).
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
  frontProxyCaCert: string;
  frontProxyClientCert: string;
  frontProxyClientKey: string;
  /** The apiserver's client certificate towards kubelets (logs, exec, port-forward). */
  kubeletClientCert: string;
  kubeletClientKey: string;
}

/** A client certificate for one identity, e.g. a node's kubelet or kube-proxy. */
export interface ClientIdentity { cert: string; key: string }

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ecKey(dir: string, name: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
}

function selfSignedCa(dir: string, name: string, subject: string): void {
  ecKey(dir, name);
  openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '30', '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', `${name}.crt`], dir);
}

function signedCert(dir: string, name: string, ca: string, subject: string, extensions: string): void {
  ecKey(dir, name);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-sha256', '-days', '30', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
}

/** Creates the PKI in `dir`, or reuses it when it is already there (a restarted cluster keeps its identity). */
export function ensurePki(dir: string, options: { extraServingIps?: string[] } = {}): Pki {
  mkdirSync(dir, { recursive: true });
  const pki: Pki = {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    servingCert: join(dir, 'apiserver.crt'),
    servingKey: join(dir, 'apiserver.key'),
    adminCert: join(dir, 'admin.crt'),
    adminKey: join(dir, 'admin.key'),
    serviceAccountKey: join(dir, 'sa.key'),
    serviceAccountPub: join(dir, 'sa.pub'),
    frontProxyCaCert: join(dir, 'front-proxy-ca.crt'),
    frontProxyClientCert: join(dir, 'front-proxy-client.crt'),
    frontProxyClientKey: join(dir, 'front-proxy-client.key'),
    kubeletClientCert: join(dir, 'apiserver-kubelet-client.crt'),
    kubeletClientKey: join(dir, 'apiserver-kubelet-client.key'),
  };
  ensureApiserverServingCert(pki, options.extraServingIps ?? []);
  if (existsSync(pki.kubeletClientCert)) return pki;
  if (existsSync(pki.frontProxyClientCert)) {
    // A PKI made before kubelets were part of the cluster gains the apiserver's kubelet client certificate.
    kubeletClient(dir);
    return pki;
  }

  signedCert(dir, 'admin', 'ca', '/O=system:masters/CN=modelship-admin', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ].join('\n'));
  ecKey(dir, 'sa');
  openssl(['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  // Aggregated APIs (a metrics API for HPA tests) authenticate the apiserver through this chain.
  selfSignedCa(dir, 'front-proxy-ca', '/CN=modelship-front-proxy-ca');
  signedCert(dir, 'front-proxy-client', 'front-proxy-ca', '/CN=front-proxy-client', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=clientAuth',
  ].join('\n'));
  kubeletClient(dir);
  return pki;
}

const clientExtensions = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth'].join('\n');

function kubeletClient(dir: string): void {
  // In system:masters, as kubeadm's was until 1.29: the kubelet authorizes it through the apiserver.
  signedCert(dir, 'apiserver-kubelet-client', 'ca', '/O=system:masters/CN=kube-apiserver-kubelet-client', clientExtensions);
}

/**
 * The serving certificate names every address the apiserver is reached at. A node in its own network
 * namespace reaches it at the host end of its link, so a cluster with such a node re-signs the
 * certificate when that address is new.
 */
function ensureApiserverServingCert(pki: Pki, extraIps: string[]): void {
  const dir = pki.dir;
  if (!existsSync(pki.caCert)) selfSignedCa(dir, 'ca', '/CN=modelship-test-ca');
  const ips = ['127.0.0.1', '10.96.0.1', ...extraIps];
  const sans = [...ips.map((ip) => `IP:${ip}`), 'DNS:localhost', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local'].join(',');
  const record = join(dir, 'apiserver.sans');
  if (existsSync(pki.servingCert) && existsSync(record) && readFileSync(record, 'utf8') === sans && certificateServes(readFileSync(pki.servingCert), ips)) return;
  signedCert(dir, 'apiserver', 'ca', '/CN=kube-apiserver', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    `subjectAltName=${sans}`,
  ].join('\n'));
  writeFileSync(record, sans);
}

/**
 * A CA of its own and a serving certificate for `ips`, made once in `dir`: for a server the tests run
 * that pods must trust through a CA bundle (a model store), not through the cluster's CA.
 */
export function ensureServingIdentity(dir: string, ips: string[]): { caCert: string; cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const identity = { caCert: join(dir, 'ca.crt'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key') };
  if (!existsSync(identity.caCert)) selfSignedCa(dir, 'ca', '/CN=modelship-test-model-store-ca');
  // A kept directory (make run again, after the host's address changed) may hold a certificate for
  // other addresses, or one about to expire: every fetch from the store would fail its TLS check.
  if (!existsSync(identity.cert) || !certificateServes(readFileSync(identity.cert), ips)) {
    signedCert(dir, 'server', 'ca', '/CN=model-store', [
      'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=serverAuth',
      `subjectAltName=${[...ips.map((ip) => `IP:${ip}`), 'DNS:localhost'].join(',')}`,
    ].join('\n'));
  }
  return identity;
}

/**
 * Whether a certificate still serves these IP addresses: it names each of them, and it is valid for
 * at least another day (certificates here last 30 days, and a kept cluster directory may be older).
 */
export function certificateServes(certPem: Buffer | string, ips: string[], now = new Date()): boolean {
  const cert = new X509Certificate(certPem);
  const names = (cert.subjectAltName ?? '').split(', ');
  return ips.every((ip) => names.includes(`IP Address:${ip}`)) && new Date(cert.validTo).getTime() > now.getTime() + 86_400_000;
}

/** A client certificate signed by the cluster CA, made once per name. */
export function ensureClientIdentity(pki: Pki, name: string, subject: string): ClientIdentity {
  const identity = { cert: join(pki.dir, `${name}.crt`), key: join(pki.dir, `${name}.key`) };
  if (!existsSync(identity.cert)) signedCert(pki.dir, name, 'ca', subject, clientExtensions);
  return identity;
}
