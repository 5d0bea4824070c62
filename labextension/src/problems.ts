/**
 * Validation problems from the server, sorted to where they belong in the graph.
 *
 * The server names a problem's node (`node`), edge (`edge`, the index of the edge in the
 * file's `edges` list) and field (`field`: a config path, or for an edge problem one of
 * `from`, `to`, `when`, `branch`, `on`). Anything that names neither an existing node nor
 * an existing edge is a problem of the flow as a whole.
 */
import type { FlowModel } from './flowfile';

export interface Problem {
  node: string | null;
  /** The index of the edge in the file's `edges` list, for a problem of an edge. */
  edge: number | null;
  field: string | null;
  message: string;
}

export interface ProblemMap {
  /** Problems by node id. */
  nodes: Map<string, Problem[]>;
  /** Problems by edge index (the edge's position in the file's `edges` list). */
  edges: Map<number, Problem[]>;
  /** Problems of the flow as a whole, or naming something the graph does not draw. */
  general: Problem[];
}

/** One line for a problem, as the command line prints it:
 * `node 'x', edges[2], field 'y': message`. */
export function problemText(problem: Problem): string {
  const where: string[] = [];
  if (problem.node !== null) {
    where.push(`node '${problem.node}'`);
  }
  if (problem.edge !== null) {
    where.push(`edges[${problem.edge}]`);
  }
  if (problem.field) {
    where.push(`field '${problem.field}'`);
  }
  return where.length > 0 ? `${where.join(', ')}: ${problem.message}` : problem.message;
}

/** Check the shape of the server's problem list; throws on anything else. */
export function readProblems(payload: unknown): Problem[] {
  if (!Array.isArray(payload)) {
    throw new Error('the server answered without a list of problems');
  }
  return payload.map((item: unknown, i: number) => {
    if (typeof item !== 'object' || item === null || typeof (item as Problem).message !== 'string') {
      throw new Error(`problem #${i + 1} from the server has no message`);
    }
    const p = item as Record<string, unknown>;
    return {
      node: typeof p.node === 'string' ? p.node : null,
      edge: Number.isInteger(p.edge) && (p.edge as number) >= 0 ? (p.edge as number) : null,
      field: typeof p.field === 'string' ? p.field : null,
      message: p.message as string
    };
  });
}

/** Sort problems onto the nodes and edges of `flow`. */
export function problemsByElement(flow: FlowModel, problems: readonly Problem[]): ProblemMap {
  const nodeIds = new Set(flow.nodes.map(n => n.id));
  const edgeIndexes = new Set(flow.edges.map(e => e.index));
  const out: ProblemMap = { nodes: new Map(), edges: new Map(), general: [] };
  for (const problem of problems) {
    const edge = problem.edge;
    if (edge !== null && edgeIndexes.has(edge)) {
      out.edges.set(edge, [...(out.edges.get(edge) ?? []), problem]);
    } else if (problem.node !== null && nodeIds.has(problem.node)) {
      out.nodes.set(problem.node, [...(out.nodes.get(problem.node) ?? []), problem]);
    } else {
      out.general.push(problem);
    }
  }
  return out;
}

/** Same problem twice (the browser and the server both saw it) is shown once. */
export function uniqueProblems(problems: readonly Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter(p => {
    const key = problemText(p);
    if (seen.has(key)) {
      return false;
    }
    seen.add(key);
    return true;
  });
}
