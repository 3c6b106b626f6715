/* scripted-msg: the scripted test plugin exporting only the message hook. */
#define ONLY_MESSAGE 1
#include "../policytest-scripted/scripted.c"
