// Work over a list with a bounded number of calls in flight.

/**
 * Calls `fn` on every item, at most `limit` at once, and gives back the results in the items'
 * order; rejects with the first failure (the calls in flight finish first, no new one starts).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
      while (!failed && next < items.length) {
        const i = next++;
        try {
          results[i] = await fn(items[i], i);
        } catch (err) {
          failed = true;
          throw err;
        }
      }
    }),
  );
  return results;
}
