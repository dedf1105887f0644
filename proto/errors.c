/* proto/errors.c - pc_strerror()/pc_errname() generated from PC_ERRNO_MAP. */
#include "proto/errors.h"

const char *pc_strerror(int code)
{
    switch (code) {
#define PC__ERR_MSG(name, value, msg) case (value): return (msg);
    PC_ERRNO_MAP(PC__ERR_MSG)
#undef PC__ERR_MSG
    }
    return "unknown error";
}

const char *pc_errname(int code)
{
    switch (code) {
#define PC__ERR_NAME(name, value, msg) case (value): return "PC_E_" #name;
    PC_ERRNO_MAP(PC__ERR_NAME)
#undef PC__ERR_NAME
    }
    return "PC_E_UNKNOWN";
}
