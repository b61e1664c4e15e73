// every test process, as the command does (src/cli/main.ts): Node's notice that node:sqlite is experimental is noise in the output
import { quietSqliteNotice } from '../src/util/sqlite-notice.ts'

quietSqliteNotice()
