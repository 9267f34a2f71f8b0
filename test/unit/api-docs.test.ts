// docs/api-reference.md is generated from the CRD; this fails when the CRD changed without it.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { generateApiDocs } from '../../hack/generate-api-docs.js';

test('the API reference matches the CRD (run `make generate` after changing the CRD)', (t) => {
  const committed = readFileSync(new URL('../../docs/api-reference.md', import.meta.url), 'utf8');
  t.is(committed, generateApiDocs());
  t.regex(committed, /each step is exactly one of setWeight, setMirror and pause/, 'CEL messages are listed');
  t.regex(committed, /`spec.rollout.analysis.checks\[\].prometheus.query`/, 'list items are described');
});
