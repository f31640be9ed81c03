// Entry of an embedding worker when nearline runs from its TypeScript sources (tests, the repository's CLI
// with NEARLINE_FROM_SOURCE=1): registers tsx in this thread, then loads worker.ts. dist/ runs worker.js.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
