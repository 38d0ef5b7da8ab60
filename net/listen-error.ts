/**
 * A listen that failed, said so that an operator knows what to change: Bun's
 * own text ("Failed to listen at 127.0.0.1") names neither the port nor why.
 */
export function explainListenError(error: unknown, host: string, port: number, what = "chat"): Error {
  const code = (error as { code?: string })?.code;
  if (code === "EADDRINUSE") {
    return new Error(`Cannot listen on ${host}:${port} for ${what}: address in use (another program, or another ChatterBox, has port ${port}); choose another port`);
  }
  if (code === "EACCES") return new Error(`Cannot listen on ${host}:${port} for ${what}: permission denied (ports below 1024 need privileges)`);
  if (code === "EADDRNOTAVAIL") return new Error(`Cannot listen on ${host}:${port} for ${what}: ${host} is not an address of this machine`);
  return error instanceof Error ? error : new Error(String(error));
}
