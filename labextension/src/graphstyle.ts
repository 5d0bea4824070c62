/**
 * How the flow graph looks: node and edge styles, problem marks, the selection halo and
 * the connecting gesture's ghost edge. Problem and selection colours come from the
 * server's palette, so they match the notebook workbench.
 */
import type cytoscape from 'cytoscape';

import { NODE_FONT_PX, type Palette } from './graph';

const STYLE: cytoscape.StylesheetStyle[] = [
  {
    selector: 'node',
    style: {
      shape: 'round-rectangle',
      label: 'data(label)',
      'background-color': 'data(colour)',
      'border-width': 2,
      'border-color': '#4a4a4a',
      'text-wrap': 'wrap',
      'text-valign': 'center',
      'text-halign': 'center',
      'font-size': NODE_FONT_PX,
      color: '#1a1a1a',
      width: 'data(width)',
      height: 52
    }
  },
  {
    selector: 'node.start-node',
    style: { shape: 'ellipse', width: 56, height: 56, 'background-color': '#ffffff', 'border-style': 'double', 'border-width': 4 }
  },
  {
    selector: 'node.problem',
    style: { 'border-color': '#e00000', 'border-width': 5, 'border-style': 'dashed' }
  },
  // the selection is drawn as a halo outside the node, so a problem border stays visible
  {
    selector: 'node:selected',
    style: { 'underlay-color': '#1f3b73', 'underlay-opacity': 0.35, 'underlay-padding': 7, 'underlay-shape': 'round-rectangle' }
  },
  { selector: 'edge:selected', style: { width: 4, 'underlay-color': '#1f3b73', 'underlay-opacity': 0.3, 'underlay-padding': 4 } },
  {
    selector: 'edge',
    style: {
      'curve-style': 'bezier',
      'target-arrow-shape': 'triangle',
      width: 2,
      'line-color': '#8a8a8a',
      'target-arrow-color': '#8a8a8a',
      label: 'data(label)',
      'font-size': 11,
      color: '#1a1a1a',
      'text-background-color': '#ffffff',
      'text-background-opacity': 0.95,
      'text-background-padding': '3px',
      'text-background-shape': 'roundrectangle',
      'text-border-width': 1,
      'text-border-color': '#d0d0d0',
      'text-border-opacity': 1,
      'text-wrap': 'wrap',
      'text-max-width': '200px',
      // beside the edge, not over it
      'text-rotation': 'autorotate',
      'text-margin-y': -12
    }
  },
  { selector: '.eh-ghost-edge, edge.eh-preview', style: { 'line-color': '#1f3b73', 'target-arrow-color': '#1f3b73', 'line-style': 'dashed' } },
  { selector: '.eh-ghost-node', style: { opacity: 0, label: '' } },
  { selector: 'edge.conditional', style: { 'line-style': 'dashed', 'line-color': '#b58900', 'target-arrow-color': '#b58900' } },
  { selector: 'edge.error-edge', style: { 'line-color': '#d64541', 'target-arrow-color': '#d64541' } },
  { selector: 'edge.problem', style: { 'line-color': '#e00000', 'target-arrow-color': '#e00000', width: 4 } },
];

/** STYLE with the problem and selection colours of the server's palette. */
export function styleOf(palette: Palette): cytoscape.StylesheetStyle[] {
  const style = [...STYLE];
  if (palette.problem) {
    const problem = palette.problem;
    style.push(
      { selector: 'node.problem', style: { 'border-color': problem } },
      { selector: 'edge.problem', style: { 'line-color': problem, 'target-arrow-color': problem } }
    );
  }
  if (palette.selected) {
    style.push({ selector: ':selected', style: { 'underlay-color': palette.selected } });
  }
  return style;
}
