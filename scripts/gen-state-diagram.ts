/** Rewrites the Mermaid diagram in docs/state-machine.md from the transition table. */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { embedStateDiagram } from '../packages/server/src/orchestrator/state-diagram.js';

const doc = fileURLToPath(new URL('../docs/state-machine.md', import.meta.url));
const before = readFileSync(doc, 'utf8');
const after = embedStateDiagram(before);
if (after !== before) writeFileSync(doc, after);
process.stdout.write(after === before ? 'docs/state-machine.md is up to date\n' : 'docs/state-machine.md rewritten\n');
