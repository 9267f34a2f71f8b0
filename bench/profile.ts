// Summarises CPU profiles and heap snapshots of the operator:
//   node --import tsx bench/profile.ts FILE.cpuprofile|FILE.heapsnapshot...
import { heapMarkdown, summarizeHeap } from './lib/heap.js';
import { profileMarkdown, summarizeProfile } from './lib/profile.js';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node --import tsx bench/profile.ts FILE.cpuprofile|FILE.heapsnapshot...\n');
  process.exit(2);
}
for (const f of files) {
  process.stdout.write(f.endsWith('.heapsnapshot') ? heapMarkdown(summarizeHeap(f)) : profileMarkdown(summarizeProfile(f)));
}
