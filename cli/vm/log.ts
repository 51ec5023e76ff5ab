/** How the VM tooling reports progress: one line at a time, to stderr unless a caller says otherwise. */
export type VmLogger = (message: string) => void;

export const stderrLog: VmLogger = (m) => process.stderr.write(`${m}\n`);
