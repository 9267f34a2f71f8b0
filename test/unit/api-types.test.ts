// operator/api/generated.ts is generated from the CRD; this fails when either was changed alone.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { generateTypes } from '../../hack/generate-types.js';

test('the TypeScript API types match the CRD schema (run `make generate` after changing the CRD)', async (t) => {
  const committed = readFileSync(new URL('../../operator/api/generated.ts', import.meta.url), 'utf8');
  t.is(committed, await generateTypes());
});
