// Writes src/edits.ts, the TypeScript types of the file view's requests, edits and replies,
// from src/edits.schema.json (which jupyter_flow/edits.py writes: run
// `python scripts/edit_types.py` from the repository root to write both).
// With --stdout, prints the types instead of writing them (the tests compare the two).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const schemaPath = join(here, 'src', 'edits.schema.json');
const typesPath = join(here, 'src', 'edits.ts');

const text = readFileSync(schemaPath, 'utf-8');
const digest = createHash('sha256').update(text, 'utf-8').digest('hex');
const banner = `/* eslint-disable */
/**
 * The requests, edits and replies of the jupyter-flow file view, GENERATED from
 * src/edits.schema.json, which jupyter_flow/edits.py writes. Do not edit by hand: change
 * jupyter_flow/edits.py and run \`python scripts/edit_types.py\` from the repository root.
 *
 * schema sha256: ${digest}
 */`;

const types = await compile(JSON.parse(text), 'FileViewRoutes', {
  bannerComment: banner,
  unreachableDefinitions: true,
  additionalProperties: false,
  strictIndexSignatures: false,
  style: { singleQuote: true, printWidth: 120, trailingComma: 'none', arrowParens: 'avoid' }
});

if (process.argv.includes('--stdout')) {
  process.stdout.write(types);
} else {
  writeFileSync(typesPath, types);
}
