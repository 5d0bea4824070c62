/**
 * Finding nodes in a flow: a query matches a node's id, kind, title or any text of its
 * config (keys and values), without regard to case; the matches come in the file's order.
 *
 * Plain data only, so the unit tests check it directly.
 */
import type { FlowModel } from './flowfile';

/** Where a node matched: the first of its id, kind, title and config that holds the query. */
export type MatchPlace = 'id' | 'kind' | 'title' | 'config';

export interface SearchMatch {
  node: string;
  where: MatchPlace;
}

/** Every text of a config: its keys and its values, however deep. */
function texts(value: unknown, out: string[] = []): string[] {
  if (value === null || value === undefined) {
    return out;
  }
  if (Array.isArray(value)) {
    value.forEach(item => texts(item, out));
  } else if (typeof value === 'object') {
    for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
      out.push(key);
      texts(item, out);
    }
  } else {
    out.push(String(value));
  }
  return out;
}

/** The nodes of `flow` that `query` matches (none for a blank query). */
export function searchFlow(flow: FlowModel | null, query: string): SearchMatch[] {
  const wanted = query.trim().toLowerCase();
  if (!flow || !wanted) {
    return [];
  }
  const holds = (text: string | undefined) => text !== undefined && text.toLowerCase().includes(wanted);
  const matches: SearchMatch[] = [];
  for (const node of flow.nodes) {
    const where: MatchPlace | null = holds(node.id)
      ? 'id'
      : holds(node.type)
        ? 'kind'
        : holds(node.title)
          ? 'title'
          : texts(node.config).some(holds)
            ? 'config'
            : null;
    if (where) {
      matches.push({ node: node.id, where });
    }
  }
  return matches;
}

/** The match after `current` (a node id, or null), going round to the first. */
export function nextMatch(matches: readonly SearchMatch[], current: string | null): SearchMatch | null {
  if (matches.length === 0) {
    return null;
  }
  const at = current === null ? -1 : matches.findIndex(m => m.node === current);
  return matches[(at + 1) % matches.length];
}
