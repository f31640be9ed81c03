import type { ParseArgsConfig } from 'node:util';
import { alias } from './alias.ts';
import { apply } from './apply.ts';
import { compare } from './compare.ts';
import { demo } from './demo.ts';
import { drop } from './drop.ts';
import { history } from './history.ts';
import { keys } from './keys.ts';
import { list, show } from './list.ts';
import { materializeCommand } from './materialize.ts';
import { nearest } from './nearest.ts';
import { push } from './push.ts';
import { serve } from './serve.ts';
import { stats } from './stats.ts';

export interface CommandContext {
  home: string;
  values: Record<string, unknown>;
  positionals: string[];
}

export interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(ctx: CommandContext): Promise<number>;
}

export const COMMANDS: Record<string, Command> = {
  apply,
  materialize: materializeCommand,
  push,
  serve,
  nearest,
  list,
  show,
  stats,
  alias,
  compare,
  drop,
  keys,
  history,
  demo,
};
