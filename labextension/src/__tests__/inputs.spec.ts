// The flow's declared inputs as the Run and Schedule forms show them, and what their
// fields become: JSON values for a run, Python literals for a notebook's parameters.
import { declaredInputs, fieldText, fieldValue, pythonLiteral } from '../inputs';
import { parseFlow } from '../flowfile';

describe('declared inputs', () => {
  const flow = parseFlow(
    'name: f\ninputs:\n  text: {type: text, default: hi}\n  n: {type: integer}\n  opts: {type: object, default: {a: 1}}\n  ok: {type: boolean, default: true}\nnodes: []\n'
  );

  it('reads each input with its type, default and whether it is required', () => {
    expect(flow.inputs?.map(i => [i.name, i.type, i.required])).toEqual([
      ['text', 'text', false],
      ['n', 'integer', true],
      ['opts', 'object', false],
      ['ok', 'boolean', false]
    ]);
    expect(flow.inputs?.map(fieldText)).toEqual(['hi', '', '{"a":1}', 'true']);
    expect(declaredInputs(['not', 'a', 'mapping'])).toEqual([]);
  });

  it('turns fields into values, and names the input whose text does not fit', () => {
    const [text, n, opts, ok] = flow.inputs!;
    expect(fieldValue(text, 'hello')).toBe('hello');
    expect(fieldValue(n, '')).toBeUndefined();
    expect(fieldValue(n, '3')).toBe(3);
    expect(() => fieldValue(n, 'three')).toThrow("input 'n': 'three' is not a number");
    expect(fieldValue(opts, '{"b": [1, null]}')).toEqual({ b: [1, null] });
    expect(() => fieldValue(opts, '{b')).toThrow("input 'opts': not JSON");
    expect(fieldValue(ok, false)).toBe(false);
  });

  it('writes Python literals for a scheduled notebook', () => {
    expect(pythonLiteral({ text: 'it\'s "x"\n', n: 2, on: true, off: false, none: null, list: [1.5] })).toBe(
      '{"text": "it\'s \\"x\\"\\n", "n": 2, "on": True, "off": False, "none": None, "list": [1.5]}'
    );
    expect(() => pythonLiteral(Number.NaN)).toThrow();
  });
});
