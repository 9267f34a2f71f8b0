// PKI for the test control plane, made with the system's openssl. ECDSA P-256 keys keep generation
// well under a second, and every Kubernetes component accepts them (ES256 for service-account tokens).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
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
}

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
export function ensurePki(dir: string): Pki {
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
  };
  if (existsSync(pki.frontProxyClientCert)) return pki;

  selfSignedCa(dir, 'ca', '/CN=modelship-test-ca');
  signedCert(dir, 'apiserver', 'ca', '/CN=kube-apiserver', [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
  ].join('\n'));
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
  return pki;
}
