// A workflow's failure as the client reports it: its message and ApplicationFailure type. Apart
// from client.ts so the CLI can turn errors into exit codes without loading the Temporal SDK.
export class WorkflowError extends Error {
  constructor(
    message: string,
    readonly type: string | undefined,
  ) {
    super(message);
  }
}
