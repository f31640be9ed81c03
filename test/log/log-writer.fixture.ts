// Holds a source's log open for append until killed: the lock test's other process.
import { openFileLog } from '../../src/log/file.ts';

const log = await openFileLog(process.argv[2], 'items', { writable: true });
await log.append([{ key: 'a', data: 1 }]);
process.stdout.write('ready\n');
setInterval(() => undefined, 1000);
