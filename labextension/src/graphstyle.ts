/**
 * How the flow graph looks: node and edge styles, problem marks, the selection halo,
 * search matches and the connecting gesture's ghost edge, in the colours of JupyterLab's
 * theme (light or dark). Node kinds keep the server's palette colours, so they match the
 * notebook workbench; on a dark theme they are drawn as tints of the background, so that
 * labels in the theme's text colour stay readable on them.
 *
 * Plain data only: the theme's colours are read elsewhere (theme.ts) and handed in.
 */
import type cytoscape from 'cytoscape';

import { EDGE_FONT_PX, NODE_FONT_PX, type Palette } from './graph';

/** The colours the graph takes from the theme. */
export interface GraphTheme {
  dark: boolean;
  /** The canvas behind the graph. */
  background: string;
  /** Labels. */
  text: string;
  /** Node borders and edges. */
  line: string;
  edge: string;
  /** The box behind an edge label, and its border. */
  labelBackground: string;
  labelBorder: string;
  /** The selection and search marks. */
  accent: string;
  warn: string;
}

/** JupyterLab's light theme, for when no theme can be read. */
export const LIGHT_THEME: GraphTheme = {
  dark: false,
  background: '#ffffff',
  text: '#1a1a1a',
  line: '#4a4a4a',
  edge: '#8a8a8a',
  labelBackground: '#ffffff',
  labelBorder: '#d0d0d0',
  accent: '#1f3b73',
  warn: '#b58900'
};

function baseStyle(theme: GraphTheme): cytoscape.StylesheetStyle[] {
  return [
    {
      selector: 'node',
      style: {
        shape: 'round-rectangle',
        label: 'data(label)',
        'background-color': 'data(colour)',
        // a tint of the kind's colour on a dark canvas, the colour itself on a light one
        'background-opacity': theme.dark ? 0.42 : 1,
        'border-width': 2,
        'border-color': theme.line,
        'text-wrap': 'wrap',
        'text-valign': 'center',
        'text-halign': 'center',
        'font-size': NODE_FONT_PX,
        color: theme.text,
        width: 'data(width)',
        height: 52
      }
    },
    {
      selector: 'node.start-node',
      style: {
        shape: 'ellipse',
        width: 56,
        height: 56,
        'background-color': theme.background,
        'background-opacity': 1,
        'border-style': 'double',
        'border-width': 4
      }
    },
    {
      selector: 'node.problem',
      style: { 'border-color': '#e00000', 'border-width': 5, 'border-style': 'dashed' }
    },
    {
      selector: 'node.search-match',
      style: { 'outline-width': 3, 'outline-color': theme.warn, 'outline-offset': 3, 'outline-opacity': 1 }
    },
    // the selection is drawn as a halo outside the node, so a problem border stays visible
    {
      selector: 'node:selected',
      style: {
        'underlay-color': theme.accent,
        'underlay-opacity': theme.dark ? 0.6 : 0.35,
        'underlay-padding': 7,
        'underlay-shape': 'round-rectangle'
      }
    },
    {
      selector: 'edge:selected',
      style: { width: 4, 'underlay-color': theme.accent, 'underlay-opacity': theme.dark ? 0.6 : 0.3, 'underlay-padding': 4 }
    },
    {
      selector: 'edge',
      style: {
        'curve-style': 'bezier',
        'target-arrow-shape': 'triangle',
        width: 2,
        'line-color': theme.edge,
        'target-arrow-color': theme.edge,
        label: 'data(label)',
        'font-size': EDGE_FONT_PX,
        color: theme.text,
        // along the edge, lifted off the line, on a box of its own; the label is at most
        // EDGE_LABEL_CHARS long, and the whole text is in the edge's tooltip
        'text-rotation': 'autorotate',
        'text-margin-y': -10,
        'text-wrap': 'none',
        'text-background-color': theme.labelBackground,
        'text-background-opacity': 0.95,
        'text-background-padding': '3px',
        'text-background-shape': 'roundrectangle',
        'text-border-width': 1,
        'text-border-color': theme.labelBorder,
        'text-border-opacity': 1
      }
    },
    // a labelled edge is drawn over the nodes, so a node never hides its label
    { selector: 'edge.labelled', style: { 'z-compound-depth': 'top', 'z-index-compare': 'manual', 'z-index': 10 } },
    {
      selector: '.eh-ghost-edge, edge.eh-preview',
      style: { 'line-color': theme.accent, 'target-arrow-color': theme.accent, 'line-style': 'dashed' }
    },
    { selector: '.eh-ghost-node', style: { opacity: 0, label: '' } },
    { selector: 'edge.conditional', style: { 'line-style': 'dashed', 'line-color': theme.warn, 'target-arrow-color': theme.warn } },
    { selector: 'edge.error-edge', style: { 'line-color': '#d64541', 'target-arrow-color': '#d64541' } },
    { selector: 'edge.problem', style: { 'line-color': '#e00000', 'target-arrow-color': '#e00000', width: 4 } }
  ];
}

/** The graph's style in `theme`'s colours, with the problem and selection colours of the
 * server's palette. */
export function styleOf(palette: Palette, theme: GraphTheme = LIGHT_THEME): cytoscape.StylesheetStyle[] {
  const style = baseStyle(theme);
  if (palette.problem) {
    const problem = palette.problem;
    style.push(
      { selector: 'node.problem', style: { 'border-color': problem } },
      { selector: 'edge.problem', style: { 'line-color': problem, 'target-arrow-color': problem } }
    );
  }
  if (palette.selected && !theme.dark) {
    style.push({ selector: ':selected', style: { 'underlay-color': palette.selected } });
  }
  style.push(...runStyle(palette, theme));
  return style;
}

/** The status colours of a run when the server's palette lacks them (jupyter_flow.palette's). */
const RUN_COLOURS: Record<string, string> = {
  pending: '#d0d4da',
  running: '#f5b82e',
  ok: '#3aa655',
  error: '#d64541',
  skipped: '#eeeeee',
  cancelled: '#9b72cf'
};
/** A result from the node cache: the ok colour, a double border in this colour (the
 * workbench's "cached" badge colour). */
export const CACHED_COLOUR = '#1565c0';

/** Nodes in a run: filled with their status's colour (a cached result: ok, with a double
 * border); a node that is running gets a thick border, so it shows on any theme. */
function runStyle(palette: Palette, theme: GraphTheme): cytoscape.StylesheetStyle[] {
  const colour = (status: string) => palette.statuses?.get(status) ?? RUN_COLOURS[status];
  const opacity = theme.dark ? 0.75 : 1;
  // on a dark canvas the pale states (not run, skipped) are faint tints, so the theme's
  // light labels stay readable on them
  const faint = (status: string) => theme.dark && (status === 'pending' || status === 'skipped');
  const out: cytoscape.StylesheetStyle[] = Object.keys(RUN_COLOURS).map(status => ({
    selector: `node.run-${status}`,
    style: { 'background-color': colour(status), 'background-opacity': faint(status) ? 0.18 : opacity }
  }));
  out.push(
    { selector: 'node.run-running', style: { 'border-width': 5, 'border-color': colour('running'), 'border-style': 'dotted' } },
    { selector: 'node.run-error', style: { 'border-width': 4, 'border-color': colour('error') } },
    {
      selector: 'node.run-cached',
      style: { 'background-color': colour('ok'), 'background-opacity': opacity, 'border-style': 'double', 'border-width': 6, 'border-color': CACHED_COLOUR }
    }
  );
  return out;
}
