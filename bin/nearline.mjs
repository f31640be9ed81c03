#!/usr/bin/env node
// nearline runs from its TypeScript sources: tsx compiles them on load (definitions files may be TypeScript too).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/index.ts');
