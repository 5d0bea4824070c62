declare module 'cytoscape-navigator' {
  import type cytoscape from 'cytoscape';
  const navigator: cytoscape.Ext;
  export default navigator;
}
