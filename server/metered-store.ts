/**
 * The committer's store, timed: each group commit's size, outcome and round
 * trip go to a CommitRecorder. A subclass rather than an edit of the committer,
 * so that the commit path itself stays as it is.
 */
import type { CommitRecorder } from "./metrics";
import { Store, type AppendItem, type AppendResult } from "./store";

export class MeteredStore extends Store {
  constructor(
    sql: ConstructorParameters<typeof Store>[0],
    private readonly recorder: CommitRecorder,
  ) {
    super(sql);
  }

  override async appendBatch(items: AppendItem[]): Promise<AppendResult[]> {
    const started = performance.now();
    try {
      const results = await super.appendBatch(items);
      this.recorder.committed(items.length, results.filter((r) => r.ok && !r.duplicate).length, (performance.now() - started) / 1000);
      return results;
    } catch (error) {
      this.recorder.committed(items.length, 0, (performance.now() - started) / 1000);
      throw error;
    }
  }
}
