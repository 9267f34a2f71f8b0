// Where a model's files come from: each URI scheme lists its files as plain HTTP GETs, so one download
// loop serves them all. Credentials come only from the environment, which the Pod fills from the named
// Secret (envFrom) for the fetcher container alone.
//   https://host/path           one file
//   s3://bucket/key-or-prefix   S3 ListObjectsV2 + GET, signed with SigV4 when AWS_ACCESS_KEY_ID is set;
//                               AWS_REGION (default us-east-1), AWS_ENDPOINT_URL for S3-compatible stores
//   gs://bucket/key-or-prefix   Cloud Storage's S3-compatible XML API; HMAC keys in GCS_HMAC_ACCESS_ID and
//                               GCS_HMAC_SECRET, anonymous otherwise; GCS_ENDPOINT_URL to override
//   hf://org/repo[@revision]    the Hugging Face Hub's file list and resolve URLs; HF_TOKEN, HF_ENDPOINT
import aws4 from 'aws4';
import { XMLParser } from 'fast-xml-parser';

export interface SourceFile {
  url: string;
  /**
   * The request headers, computed when called: the download loop calls it right before each GET. A
   * SigV4 signature carries its time (X-Amz-Date) and S3 refuses it 15 minutes later, while a large
   * model's last files may start downloading long after the listing; so a file is signed when sent.
   */
  headers: () => Record<string, string>;
  /** Path under the destination directory. */
  path: string;
}

type Env = Record<string, string | undefined>;

export interface SourceOptions {
  /** The clock SigV4 signatures take their time from (tests inject one). */
  now?: () => Date;
}

interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The headers of a GET signed now: X-Amz-Date is set from the clock rather than left to aws4's own `new Date()`. */
function signedGet(url: URL, region: string, credentials: S3Credentials | undefined, now: () => Date): Record<string, string> {
  if (!credentials) return {};
  const amzDate = now().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const signed = aws4.sign({ host: url.host, path: url.pathname + url.search, method: 'GET', service: 's3', region, headers: { 'X-Amz-Date': amzDate } }, credentials);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(signed.headers ?? {})) if (k.toLowerCase() !== 'host') headers[k] = String(v);
  return headers;
}

async function getText(url: string, headers: Record<string, string>): Promise<string> {
  const res = await fetch(url, { headers });
  const body = await res.text();
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}${body ? `: ${body.slice(0, 300)}` : ''}`);
  return body;
}

/** Path-style S3 listing (works with AWS, MinIO, Ceph and Cloud Storage's XML API alike). */
async function listS3(endpoint: string, bucket: string, key: string, region: string, credentials: S3Credentials | undefined, now: () => Date): Promise<SourceFile[]> {
  const base = endpoint.replace(/\/$/, '');
  const parser = new XMLParser({ isArray: (name) => name === 'Contents' });
  const objectUrl = (k: string) => new URL(`${base}/${bucket}/${k.split('/').map(encodeURIComponent).join('/')}`);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const url = new URL(`${base}/${bucket}`);
    url.searchParams.set('list-type', '2');
    url.searchParams.set('prefix', key);
    if (token) url.searchParams.set('continuation-token', token);
    const body = parser.parse(await getText(url.toString(), signedGet(url, region, credentials, now))) as {
      ListBucketResult?: { Contents?: { Key: string | number }[]; NextContinuationToken?: string; IsTruncated?: boolean | string };
    };
    const result = body.ListBucketResult ?? {};
    for (const c of result.Contents ?? []) keys.push(String(c.Key));
    token = String(result.IsTruncated) === 'true' ? result.NextContinuationToken : undefined;
  } while (token);
  // A key that names an object exactly is one file; anything else is a directory-like prefix.
  const exact = keys.includes(key);
  const dirPrefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  const files = exact ? [key] : keys.filter((k) => k.startsWith(dirPrefix) && !k.endsWith('/'));
  if (files.length === 0) throw new Error(`no objects under ${bucket}/${key}`);
  return files.map((k) => {
    const url = objectUrl(k);
    return { url: url.toString(), headers: () => signedGet(url, region, credentials, now), path: exact ? k.split('/').pop()! : k.slice(dirPrefix.length) };
  });
}

async function listHuggingFace(endpoint: string, repo: string, revision: string, token: string | undefined): Promise<SourceFile[]> {
  const base = endpoint.replace(/\/$/, '');
  const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};
  const info = JSON.parse(await getText(`${base}/api/models/${repo}/revision/${encodeURIComponent(revision)}`, headers)) as { sha?: string; siblings?: { rfilename: string }[] };
  // Resolve by commit sha when the Hub gives one, so every file comes from the same revision.
  const pinned = info.sha ?? revision;
  const files = (info.siblings ?? []).map((s) => s.rfilename);
  if (files.length === 0) throw new Error(`hf://${repo}@${revision} has no files`);
  return files.map((f) => ({ url: `${base}/${repo}/resolve/${encodeURIComponent(pinned)}/${f.split('/').map(encodeURIComponent).join('/')}`, headers: () => headers, path: f }));
}

export async function listSource(uri: string, env: Env, options: SourceOptions = {}): Promise<SourceFile[]> {
  const now = options.now ?? (() => new Date());
  const scheme = uri.slice(0, uri.indexOf('://'));
  const rest = uri.slice(scheme.length + 3);
  switch (scheme) {
    case 'https': {
      const url = new URL(uri);
      return [{ url: uri, headers: () => ({}), path: decodeURIComponent(url.pathname.split('/').filter(Boolean).pop() ?? 'model') }];
    }
    case 's3': {
      const [bucket = '', ...key] = rest.split('/');
      const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
      const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? `https://s3.${region}.amazonaws.com`;
      const credentials = env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) }
        : undefined;
      return listS3(endpoint, bucket, key.join('/'), region, credentials, now);
    }
    case 'gs': {
      const [bucket = '', ...key] = rest.split('/');
      const credentials = env.GCS_HMAC_ACCESS_ID && env.GCS_HMAC_SECRET ? { accessKeyId: env.GCS_HMAC_ACCESS_ID, secretAccessKey: env.GCS_HMAC_SECRET } : undefined;
      return listS3(env.GCS_ENDPOINT_URL ?? 'https://storage.googleapis.com', bucket, key.join('/'), 'auto', credentials, now);
    }
    case 'hf': {
      const [repo = '', revision = 'main'] = rest.split('@');
      return listHuggingFace(env.HF_ENDPOINT ?? 'https://huggingface.co', repo, revision, env.HF_TOKEN);
    }
    default:
      throw new Error(`the fetcher does not handle ${scheme}:// (pvc:// and oci:// models are mounted, not fetched)`);
  }
}
