// Entry of the log's compaction worker when nearline runs from its TypeScript sources (tests, the repository's
// CLI with NEARLINE_FROM_SOURCE=1): registers tsx in this thread, then loads compact-worker.ts. dist/ runs compact-worker.js.
import { register } from 'tsx/esm/api';

register();
await import('./compact-worker.ts');
