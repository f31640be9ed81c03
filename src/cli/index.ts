import { parseArgs } from 'node:util';
import { isNearlineError } from '../errors.ts';
import { COMMANDS, type Command } from './commands/index.ts';

const USAGE = `nearline — an embedding feature store

usage: nearline <command> [options]   (every command takes --home DIR, env NEARLINE_HOME, default: .,
                                       and --registry URL|FILE, env NEARLINE_REGISTRY, default: HOME/nearline.db)

${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`)
  .join('\n')}

Run 'nearline <command> --help' for a command's options.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE + '\n');
    return name ? 0 : 2;
  }
  const command: Command | undefined = COMMANDS[name];
  if (!command) {
    process.stderr.write(`nearline: unknown command ${JSON.stringify(name)}\n\n${USAGE}\n`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: { home: { type: 'string' }, registry: { type: 'string' }, help: { type: 'boolean', short: 'h' }, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    process.stderr.write(`nearline ${name}: ${(e as Error).message}\n${command.usage}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  const home = (parsed.values.home as string | undefined) ?? process.env.NEARLINE_HOME ?? process.cwd();
  // The flag wins over the environment; through the environment it also reaches what this command starts.
  if (parsed.values.registry !== undefined) process.env.NEARLINE_REGISTRY = parsed.values.registry as string;
  try {
    return await command.run({ home, values: parsed.values as Record<string, unknown>, positionals: parsed.positionals });
  } catch (e) {
    if (isNearlineError(e)) {
      process.stderr.write(`error ${e.code}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

process.exitCode = await main(process.argv.slice(2));
