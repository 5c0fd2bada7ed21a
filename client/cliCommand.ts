// How every `tenantsafe` command reads in its --help, in one place: the global options (--config,
// --json, --version) under "Global Options", required options marked, exactly-one-of rules as a
// group of their own, the exit codes and examples. Built on commander's own extension points: a
// Command subclass that `command()` creates for every sub-command (createCommand), help text
// added after the generated help (addHelpText), configureHelp, option help groups. A command adds
// only what is its own:
//
//   backup.command('tenant <tenantId>')
//     .example('tenantsafe backup tenant acme --wait')
//     .exits({ 1: 'the backup failed' })          // when 1 (or 2) means more than the default
//     .exactlyOneOf('What to restore', '--backup', '--at')
//
// Usage errors (an unknown option, a required option missing) exit 2 with a HINT: line naming
// the command's --help, as every other bad input does (docs/errors.md).
import { Command, Help, type Option } from 'commander';

/** What each exit code means unless a command says more (README, CLI; docs/errors.md). */
export const standardExitCodes: Readonly<Record<number, string>> = {
  0: 'ok',
  1: 'failed: the request was sound, but something broke, is unreachable or found a problem',
  2: 'bad input: fix what the HINT: line says (arguments, config); nothing was changed',
};

export const errorsDoc = 'docs/errors.md';

/** Options a command checks itself (with a HINT) rather than commander: still marked required in help. */
const requiredByCommand = new WeakSet<Option>();

/** Marks an option required in help whose presence the action checks itself, e.g. one that its sub-commands do not need. */
export function requiredInHelp(option: Option): Option {
  requiredByCommand.add(option);
  return option;
}

/** Whether help marks the option (required): commander enforces it, or the command checks it. */
export const isRequired = (option: Option): boolean => option.mandatory || requiredByCommand.has(option);

export class CliCommand extends Command {
  private readonly examples: string[] = [];
  private readonly exitCodes: Record<number, string> = { ...standardExitCodes };
  private drCommand = false;

  constructor(name?: string) {
    super(name);
    this.addHelpText('after', ({ error }) => this.helpFooter(error));
  }

  override createCommand(name?: string): CliCommand {
    return new CliCommand(name);
  }

  /** A command line shown under Examples (with the leading `tenantsafe`). */
  example(...lines: string[]): this {
    this.examples.push(...lines);
    return this;
  }

  /** What an exit code means for this command, where it says more than standardExitCodes. */
  exits(meanings: Record<number, string>): this {
    Object.assign(this.exitCodes, meanings);
    return this;
  }

  /**
   * Marks a command of disaster recovery (and its sub-commands): `dr` describes one database, so it
   * refuses a config naming several, and there `--database` is the database's name (commandHelpers `config`).
   */
  disasterRecovery(): this {
    this.drCommand = true;
    return this;
  }

  /** Whether it, or a command it belongs to, is one of disaster recovery. */
  isDisasterRecovery(): boolean {
    return this.drCommand || (this.parent instanceof CliCommand && this.parent.isDisasterRecovery());
  }

  /** Puts options already added under a heading of their own that says exactly one of them is required. */
  exactlyOneOf(what: string, ...flags: string[]): this {
    const heading = `${what} (exactly one of ${flags.join(', ')} is required):`;
    for (const flag of flags) {
      const option = this.options.find((o) => o.long === flag);
      if (!option) throw new Error(`${this.commandPath()}: exactlyOneOf names ${flag}, which is not an option of it`);
      option.helpGroup(heading);
    }
    return this;
  }

  /** `tenantsafe backup tenant`: the command as typed. */
  commandPath(): string {
    const names: string[] = [];
    for (let c: Command | null = this; c; c = c.parent) names.unshift(c.name());
    return names.join(' ');
  }

  /** Its own examples; a group without any shows the first of each sub-command's. */
  exampleLines(): string[] {
    if (this.examples.length > 0) return this.examples;
    const shown = this.createHelp().visibleCommands(this);
    return shown.flatMap((c) => (c instanceof CliCommand ? c.exampleLines().slice(0, 1) : []));
  }

  /** Exit codes and examples, after commander's help; wrapped as it wraps the options. */
  private helpFooter(error: boolean): string {
    const helper = this.createHelp();
    const output = this.configureOutput();
    helper.prepareContext({ error, helpWidth: (error ? output.getErrHelpWidth : output.getOutHelpWidth)?.() });
    const codes = Object.entries(this.exitCodes);
    const exitItems = codes.map(([code, meaning]) => helper.formatItem(code, 1, meaning, helper));
    return [
      '',
      'Exit codes:',
      ...exitItems,
      `  Every error type, its exit code and what to do: ${errorsDoc}.`,
      '',
      'Examples:',
      ...this.exampleLines().map((l) => `  $ ${l}`),
      '',
    ].join('\n');
  }

  override error(message: string, errorOptions?: { code?: string; exitCode?: number }): never {
    return super.error(`${message}\nHINT: \`${this.commandPath()} --help\` lists its options, exit codes and examples.`, errorOptions);
  }
}

/** The options of the program itself (--config, --json, --version): every command takes them. */
function globalOptionsOf(cmd: Command): Option[] {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root === cmd ? [] : root.options.filter((o) => !o.hidden);
}

/**
 * The program: sub-commands are CliCommands and share its help settings (commander copies them
 * to each sub-command as it is made, so this runs before any is registered).
 */
export function createProgram(name: string): CliCommand {
  const program = new CliCommand(name);
  program.configureHelp({
    showGlobalOptions: true,
    // only the program's own options are global: an intermediate command's options (failover's
    // --reason) are not taken after its sub-command's name
    visibleGlobalOptions: globalOptionsOf,
    optionDescription(this: Help, option: Option): string {
      const text = Help.prototype.optionDescription.call(this, option);
      return isRequired(option) ? `(required) ${text}` : text;
    },
  });
  return program;
}
