/** Operator tools: `ims verify|inspect|repair DATA_DIR ...` (filled in by the operator-tools issue). */
export const CLI_COMMANDS = ['verify', 'inspect', 'repair'] as const;

/** Runs a tool; returns the process exit code (0 clean, 1 problems found, 2 usage error). */
export async function runCli(argv: string[]): Promise<number> {
  console.error(`ims ${argv[0]}: not implemented yet`);
  return 2;
}
