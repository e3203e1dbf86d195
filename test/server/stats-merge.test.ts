import { expect, test } from 'vitest';
import { mergeStats } from '../../src/server/stats-merge';

const m = (rows: Array<[string, string]>): Map<string, string> => new Map(rows);

test('sums figures, keeps the largest per-class constant or age, the first word, in class order', () => {
  const a = m([
    ['items:1:number', '3'], ['items:1:age', '10'], ['items:7:number', '1'], ['items:7:age', '4'],
  ]);
  const b = m([
    ['items:1:number', '2'], ['items:1:age', '30'], ['items:3:number', '5'], ['items:3:age', '1'],
  ]);
  expect(mergeStats([a, b])).toEqual([
    ['items:1:number', '5'], ['items:1:age', '30'], ['items:3:number', '5'], ['items:3:age', '1'],
    ['items:7:number', '1'], ['items:7:age', '4'],
  ]);
  const slabs = mergeStats([
    m([['1:chunk_size', '96'], ['1:total_pages', '1'], ['active_slabs', '1'], ['total_malloced', '1048576']]),
    m([['1:chunk_size', '96'], ['1:total_pages', '2'], ['2:chunk_size', '120'], ['active_slabs', '2'], ['total_malloced', '3145728']]),
  ]);
  expect(slabs).toEqual([
    ['1:chunk_size', '96'], ['1:total_pages', '3'], ['2:chunk_size', '120'], ['active_slabs', '2'], ['total_malloced', '4194304'],
  ]);
  expect(mergeStats([m([['sizes_status', 'disabled']]), m([['sizes_status', 'enabled']])])).toEqual([['sizes_status', 'disabled']]);
  expect(mergeStats([m([['96', '2']]), m([['64', '1'], ['96', '3']])])).toEqual([['64', '1'], ['96', '5']]);
});
