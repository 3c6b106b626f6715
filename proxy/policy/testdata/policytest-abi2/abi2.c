/* abi2: the scripted test plugin claiming ABI version 2, which this host does not speak. */
#define ABI_VERSION 2
#include "../policytest-scripted/scripted.c"
