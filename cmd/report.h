/* report: `plumb report --runs DIR... --out DIR [--title T]`: reads run folders, eval results,
 * answer files and critique traces under each DIR (reports/report.h says what it finds) and
 * writes DIR/report.html (self-contained), DIR/report.md with its charts as chart-NN.svg beside
 * it, and DIR/report.json, each file whole or not at all. argv[0] is "report"; returns the exit
 * status (args.h): 1 for a bad file (named with its line), 2 for a usage error. */
#ifndef CMD_REPORT_H
#define CMD_REPORT_H

int cmd_report(int argc, char **argv);

#endif
